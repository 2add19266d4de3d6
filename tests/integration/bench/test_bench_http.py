"""The bench's HTTP transport (:mod:`fakeai.services.bench.http`) on real sockets: against a
tiny asyncio server that sends exactly the bytes each test scripts, and against the bench
tests' OpenAI-like app under real uvicorn.

A scripted server sends its next piece only once the client has read the previous one
(:class:`Reads` counts the client connection's reads), so every split really reaches the
client as its own read, with no sleep in between.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import itertools
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgspec
import pytest
from tests.integration.bench.sse_app import AppState, create_app
from tests.support.servers import run_asgi

from fakeai.embedded_redis import free_port
from fakeai.services.bench import client, http
from fakeai.services.bench.sse import DONE, SSEParser

pytestmark = pytest.mark.e2e

_DEADLINE_S = 10.0
"""The longest a test waits for the other side (a deadline, never a pace)."""


class Reads:
    """Counts the reads (``data_received`` calls) of every client connection."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Event()

    def seen(self) -> None:
        self.count += 1
        self._changed.set()

    async def reach(self, n: int) -> None:
        async with asyncio.timeout(_DEADLINE_S):
            while self.count < n:
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    counter = Reads()
    original = http._Wire.data_received

    def data_received(wire: http._Wire, data: bytes) -> None:
        original(wire, data)
        counter.seen()

    monkeypatch.setattr(http._Wire, "data_received", data_received)
    return counter


Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]
"""Answers one request (its head and body); False closes the connection afterwards."""


class Server:
    """A tiny HTTP/1.1 server on a free loopback port that answers with ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if not await self.handler(request, writer):
                    return
        finally:
            writer.close()


async def send_pieces(writer: asyncio.StreamWriter, reads: Reads, pieces: list[bytes]) -> None:
    """Write each piece once the client has read the one before."""
    for piece in pieces:
        n = reads.count
        writer.write(piece)
        await writer.drain()
        await reads.reach(n + 1)


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)
EVENTS = [b'id: 1-%d\ndata: {"n": %d}\n\n' % (i, i) for i in range(1, 4)] + [b"data: [DONE]\n\n"]
BODY = chunked(*EVENTS)


def new_client(url: str, timeout_s: float = _DEADLINE_S) -> http.Client:
    return http.Client(url, connect_timeout_s=timeout_s, read_timeout_s=timeout_s)


async def body_of(resp: http.Response) -> bytes:
    """The whole body, through :meth:`http.Response.stream` (``read`` without its limit)."""
    parts: list[bytes] = []

    def sink(data: bytes, now: float) -> None:
        parts.append(data)

    ended: object = await resp.stream(sink)
    assert ended is None  # the body's end, not a stop
    return b"".join(parts)


def cut(raw: bytes, *at: int) -> list[bytes]:
    edges = [0, *at, len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(edges)]


@pytest.mark.parametrize(
    "pieces",
    [
        # inside the first chunk-size line ("1|e")
        cut(SSE_HEAD + BODY, len(SSE_HEAD) + 1),
        # inside the CRLF after a size line, and inside the CRLF after chunk data
        cut(SSE_HEAD + BODY, len(SSE_HEAD) + 3, len(SSE_HEAD) + 5 + len(EVENTS[0]) + 1),
        # head and body apart, and the terminating chunk alone
        cut(SSE_HEAD + BODY, len(SSE_HEAD), len(SSE_HEAD + BODY) - 5),
        # one byte at a time
        cut(SSE_HEAD + BODY, *range(1, len(SSE_HEAD + BODY))),
    ],
    ids=["in-size-line", "in-crlf", "head-body-terminator", "byte-by-byte"],
)
async def test_chunked_body_split_at_awkward_boundaries(reads: Reads, pieces: list[bytes]) -> None:
    async def handler(request: bytes, writer: asyncio.StreamWriter) -> bool:
        await send_pieces(writer, reads, pieces)
        return True

    async with Server(handler) as server:
        c = new_client(server.url)
        resp = await c.request("GET", "/s", {})
        assert resp.status == 200
        assert resp.headers["content-type"] == "text/event-stream"
        body = await body_of(resp)
        c.close()
    assert reads.count >= len(pieces)
    assert body == b"".join(EVENTS)
    parser = SSEParser()
    assert [e.data for e in parser.feed(body)] == [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}', DONE]


async def test_content_length_body(reads: Reads) -> None:
    payload = b'{"object": "chat.completion"}'
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"

    async def handler(request: bytes, writer: asyncio.StreamWriter) -> bool:
        await send_pieces(writer, reads, [head % len(payload) + payload[:5], payload[5:]])
        return True

    async with Server(handler) as server:
        c = new_client(server.url)
        resp = await c.request("POST", "/v1/x", {"Content-Type": "application/json"}, b"{}")
        assert await resp.read() == payload
        c.close()
    assert server.requests[0].startswith(b"POST /v1/x HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 2\r\n" in server.requests[0]
    assert server.requests[0].endswith(b"\r\n\r\n{}")


@pytest.mark.parametrize(
    "response",
    [
        SSE_HEAD + BODY[:30],  # a chunked body cut inside a chunk
        SSE_HEAD + chunked(*EVENTS)[:-5],  # every event, no terminating chunk
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 40,
    ],
    ids=["mid-chunk", "no-last-chunk", "short-content-length"],
)
async def test_connection_closed_mid_body_is_a_payload_error(response: bytes) -> None:
    async def handler(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(response)
        await writer.drain()
        return False  # and close

    async with Server(handler) as server:
        c = new_client(server.url)
        resp = await c.request("GET", "/s", {})
        with pytest.raises(http.PayloadError):
            await body_of(resp)
        c.close()


async def test_connection_closed_before_the_head_is_a_payload_error() -> None:
    async def handler(request: bytes, writer: asyncio.StreamWriter) -> bool:
        return False

    async with Server(handler) as server:
        c = new_client(server.url)
        with pytest.raises(http.PayloadError, match="before the response's head"):
            await c.request("GET", "/s", {})
        c.close()


@pytest.mark.parametrize("status", [404, 500])
async def test_error_status_with_a_json_body(status: int) -> None:
    error = json.dumps({"error": {"message": "boom", "type": "server_error"}}).encode()

    async def handler(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(
            b"HTTP/1.1 %d Oops\r\nContent-Type: application/json\r\n" % status
            + b"Content-Length: %d\r\n\r\n%s" % (len(error), error)
        )
        return True

    async with Server(handler) as server:
        c = new_client(server.url)
        resp = await c.request("GET", "/s", {})
        assert resp.status == status
        assert json.loads(await resp.read())["error"]["message"] == "boom"
        again = await c.request("GET", "/s", {})  # the error answer left the connection usable
        assert (again.status, await again.read(9)) == (status, b'{"error":')
        c.close()
    assert server.connections == 1


async def test_a_server_that_never_answers_is_a_read_timeout() -> None:
    answered = asyncio.Event()

    async def handler(request: bytes, writer: asyncio.StreamWriter) -> bool:
        await answered.wait()
        return False

    async with Server(handler) as server:
        c = new_client(server.url, timeout_s=0.2)
        with pytest.raises(http.ReadTimeout):
            await c.request("GET", "/s", {})
        answered.set()
        c.close()


async def test_a_stalled_body_is_a_read_timeout(reads: Reads) -> None:
    answered = asyncio.Event()

    async def handler(request: bytes, writer: asyncio.StreamWriter) -> bool:
        await send_pieces(writer, reads, [SSE_HEAD + BODY[:20]])
        await answered.wait()
        return False

    async with Server(handler) as server:
        c = new_client(server.url, timeout_s=0.2)
        resp = await c.request("GET", "/s", {})
        with pytest.raises(TimeoutError):
            await body_of(resp)
        answered.set()
        c.close()


async def test_a_refused_port_is_a_connect_error() -> None:
    c = new_client(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(http.ConnectError, match=r"cannot connect to 127\.0\.0\.1"):
        await c.request("GET", "/", {})
    assert c.connects == 0


@pytest.mark.parametrize(
    ("keep_open", "connections"), [(True, 1), (False, 3)], ids=["kept-open", "closed-by-server"]
)
async def test_keep_alive_reuse(keep_open: bool, connections: int) -> None:
    """Three requests: one connection while the server keeps it open; a new one for each when
    the server closes it after answering (without saying so: the close may race the next
    request, which is then retried on a new connection)."""

    async def handler(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(SSE_HEAD + BODY)
        return keep_open

    async with Server(handler) as server:
        c = new_client(server.url)
        for _ in range(3):
            assert await body_of(await c.request("GET", "/s", {})) == b"".join(EVENTS)
        c.close()
    assert server.connections == connections
    assert len(server.requests) == 3
    assert c.connects == connections


async def test_a_body_stopped_early_is_drained_and_the_connection_reused(reads: Reads) -> None:
    first = asyncio.Event()

    async def handler(request: bytes, writer: asyncio.StreamWriter) -> bool:
        if len(server.requests) == 1:
            await send_pieces(writer, reads, [SSE_HEAD + chunked(EVENTS[0])[:-5]])
            await first.wait()  # the client has stopped reading: the rest comes after
            writer.write(b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in EVENTS[1:]))
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(SSE_HEAD + BODY)
        return True

    async with Server(handler) as server:
        c = new_client(server.url)
        resp = await c.request("GET", "/s", {})
        assert await resp.stream(lambda data, now: "stop") == "stop"
        first.set()
        assert await body_of(await c.request("GET", "/s", {})) == b"".join(EVENTS)
        c.close()
    assert c.connects == 1
    assert server.connections == 1


async def test_a_dropped_response_takes_a_new_connection() -> None:
    async def handler(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(SSE_HEAD + chunked(EVENTS[0])[:-5])  # and the stream goes on...
        return True

    async with Server(handler) as server:
        c = new_client(server.url)
        (await c.request("GET", "/s", {})).drop()
        (await c.request("GET", "/s", {})).drop()
        c.close()
    assert c.connects == 2
    assert server.connections == 2


async def test_gzip_content_encoding_on_a_chunked_stream(reads: Reads) -> None:
    z = gzip.compress(b"".join(EVENTS))
    head = SSE_HEAD.replace(b"\r\n\r\n", b"\r\nContent-Encoding: gzip\r\n\r\n")

    async def handler(request: bytes, writer: asyncio.StreamWriter) -> bool:
        await send_pieces(writer, reads, [head + chunked(z[:15])[:-5], chunked(z[15:])])
        return True

    async with Server(handler) as server:
        c = new_client(server.url)
        assert await body_of(await c.request("GET", "/s", {})) == b"".join(EVENTS)
        c.close()


async def test_cancelled_mid_body_closes_the_connection() -> None:
    async def handler(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(SSE_HEAD + chunked(EVENTS[0])[:-5])
        return True

    async with Server(handler) as server:
        c = new_client(server.url)
        resp = await c.request("GET", "/s", {})
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await body_of(resp)
        (await c.request("GET", "/s", {})).drop()
        c.close()
    assert c.connects == 2


# -- against a real uvicorn server


@pytest.fixture
def app() -> Iterator[tuple[str, AppState]]:
    state = AppState(tokens=6)
    with run_asgi(create_app(state)) as url:
        yield url, state


def _body() -> bytes:
    return msgspec.json.encode(
        {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    )


async def _events(resp: http.Response, stop_after: int | None = None) -> list[Any]:
    parser = SSEParser()
    got: list[Any] = []

    def sink(data: bytes, now: float) -> bool | None:
        for ev in parser.feed(data):
            got.append(ev)
            if ev.data == DONE or (stop_after is not None and len(got) >= stop_after):
                return True
        return None

    await resp.stream(sink)
    return got


async def test_uvicorn_stream_resume_and_keep_alive(app: tuple[str, AppState]) -> None:
    url, state = app
    c = new_client(url)
    json_h = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    texts = []
    for _ in range(3):
        resp = await c.request("POST", "/v1/chat/completions", json_h, _body())
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = await _events(resp)
        assert events[-1].data == DONE
        assert len(events) == 6 + 3  # role, 6 tokens, finish, [DONE]
        texts.append(resp.headers["x-stream-id"])
    assert c.connects == 1  # three streams on one connection
    # Drop after 3 events and resume from the last id on a new connection.
    resp = await c.request("POST", "/v1/chat/completions", json_h, _body())
    sid = resp.headers["x-stream-id"]
    head = await _events(resp, stop_after=3)
    resp.drop()
    last = head[-1].id.decode()
    resp = await c.request("GET", http.target(f"{url}/v1/streams/{sid}"), {"Last-Event-ID": last})
    tail = await _events(resp)
    ids = [e.id for e in head + tail]
    assert len(ids) == len(set(ids)) == 9
    assert c.connects == 2
    assert state.resumes == 1
    # An error answer with a JSON body, then the connection serves on.
    resp = await c.request("GET", "/v1/streams/unknown", {})
    assert resp.status == 404
    assert json.loads(await resp.read())["error"]["message"] == "unknown stream"
    resp = await c.request("POST", "/v1/chat/completions", json_h, _body())
    assert (await _events(resp))[-1].data == DONE
    assert c.connects == 2
    c.close()


# -- the bench's error kinds, through its CLI, against scripted servers


def _bench(url: str, *argv: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    client.add_arguments(parser)
    args = parser.parse_args(["--url", url, "--json", "--timeout", "5", *argv])
    client.main(args)
    return dict(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))


@pytest.fixture
def threaded_server() -> Iterator[Callable[[Handler], str]]:
    """A :class:`Server` on its own loop in a thread (the bench CLI runs its own loop)."""
    loops: list[tuple[asyncio.AbstractEventLoop, threading.Thread, Server]] = []

    def start(handler: Handler) -> str:
        loop = asyncio.new_event_loop()
        server = Server(handler)
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(server.__aenter__())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(server.__aexit__())
            loop.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert ready.wait(_DEADLINE_S)
        loops.append((loop, thread, server))
        return server.url

    yield start
    for loop, thread, _ in loops:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_DEADLINE_S)


async def _cut_mid_body(request: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(SSE_HEAD.replace(b"\r\n\r\n", b"\r\nX-Stream-Id: s1\r\n\r\n") + BODY[:40])
    await writer.drain()
    return False


async def _error_json(request: bytes, writer: asyncio.StreamWriter) -> bool:
    body = b'{"error": {"message": "overloaded", "type": "server_error"}}'
    writer.write(b"HTTP/1.1 503 Busy\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    return True


def test_bench_counts_a_body_cut_short_as_no_done(
    threaded_server: Callable[[Handler], str], capsys: pytest.CaptureFixture[str]
) -> None:
    res = _bench(threaded_server(_cut_mid_body), "--requests", "3", capsys=capsys)
    assert res["errors_by_kind"] == {"no_done": 3}
    assert "PayloadError" in res["error_samples"]["no_done"]
    assert res["requests_ok"] == 0


def test_bench_counts_an_error_status_with_its_body(
    threaded_server: Callable[[Handler], str], capsys: pytest.CaptureFixture[str]
) -> None:
    res = _bench(threaded_server(_error_json), "--requests", "2", capsys=capsys)
    assert res["errors_by_kind"] == {"http_status": 2}
    assert res["http_statuses"] == {"503": 2}
    assert "overloaded" in res["error_samples"]["http_status"]


async def test_a_reused_connection_cut_inside_the_head_is_not_retried() -> None:
    """Only a connection closed before any byte of the answer is retried: a request the
    server has started to answer may have had effects."""

    async def handler(request: bytes, writer: asyncio.StreamWriter) -> bool:
        if len(server.requests) == 1:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nContent-")
        await writer.drain()
        return False

    async with Server(handler) as server:
        c = new_client(server.url)
        assert await (await c.request("POST", "/s", {}, b"1")).read() == b""
        with pytest.raises(http.PayloadError, match="before the response's head"):
            await c.request("POST", "/s", {}, b"2")
        c.close()
    assert len(server.requests) == 2
