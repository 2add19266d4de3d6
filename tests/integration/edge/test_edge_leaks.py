"""Issue 10, finding 8: "edge RSS grows over 25,000 connect/disconnect cycles and stays up
idle". What the edge holds for a client goes when the client goes, wherever it leaves.

The invariant, on a real uvicorn edge and a real Redis (single server and cluster): after many
short-lived clients, each leaving at a different point (before the first byte, after the
headers, after the priming event, after some events, during an injected stall, by RST, or cut
by the server), the hub watches no key and holds no subscription and no response is open,
while every stream those clients read is still running. There is no producer: a subscription
the edge forgot would stay for the stream's whole life (up to ``max_stream_s``), and its
reader would go on reading and queueing that stream's entries.

The bug it pins down: a route subscribes on the hub before it publishes (the log is the
rendezvous) and the log iterator released the subscription in its ``finally``; but
``aclose()`` on an async generator that never started skips its ``finally``. An injected
``stall`` at 0 chunks (it waits before it first reads the log) ended by the client's
disconnect left the subscription on the hub, and so would a response closed before its body
ran or never run at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from tests.conftest import BOTH
from tests.integration.edge.edgekit import Edge, LogWriter, lease_producer
from tests.support.servers import eventually

from fakeai.services.edge.responses import EventStream, RunStreamsOutside
from fakeai.services.edge.state import EdgeState

pytestmark = [pytest.mark.e2e]

ROUNDS = 8
"""Each way of leaving is taken this many times, all ways at once in each round."""

CHAT = {
    "model": "gpt-4o",
    "stream": True,
    "max_tokens": 20,
    "messages": [{"role": "user", "content": "leave early"}],
}

Leave = Callable[[asyncio.StreamReader], Awaitable[None]]


def _post(host: str, body: dict[str, Any], *headers: str) -> bytes:
    raw = json.dumps(body).encode()
    head = [
        "POST /v1/chat/completions HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(raw)}",
        *headers,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + raw


def _get(host: str, sid: str, *headers: str) -> bytes:
    head = [f"GET /v1/streams/{sid} HTTP/1.1", f"Host: {host}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


async def at_once(reader: asyncio.StreamReader) -> None:
    """Leave as soon as the request is sent: before the first byte of the answer."""


async def after_head(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head


def after_events(n: int) -> Leave:
    async def leave(reader: asyncio.StreamReader) -> None:
        await after_head(reader)
        seen = b""
        while seen.count(b"\n\n") < n:
            more = await reader.read(65536)
            assert more, f"the response ended before {n} events: {seen!r}"
            seen += more

    return leave


async def to_the_end(reader: asyncio.StreamReader) -> None:
    """The server ends the response (``X-FakeAI-Disconnect-After``): read until it does."""
    await after_head(reader)
    seen = b""
    while not seen.endswith(b"0\r\n\r\n"):  # the last chunk of a chunked body
        more = await reader.read(65536)
        assert more, f"the connection closed before the response ended: {seen!r}"
        seen += more


async def _visit(port: int, request: bytes, leave: Leave, *, reset: bool) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        await leave(reader)
    finally:
        if reset:
            writer.transport.abort()  # RST, not FIN
        else:
            writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _held(state: EdgeState) -> tuple[int, int, int]:
    """(watched keys, subscriptions, open responses) of the edge."""
    hub = state.hub
    return hub.keys, hub.subscriptions, state.responses


@pytest.mark.redis
@BOTH
async def test_short_lived_clients_leave_no_subscription_on_the_hub(
    edge: Edge, logw: LogWriter
) -> None:
    url = urlsplit(edge.url)
    host, port = url.netloc, url.port
    assert port is not None
    sids = []  # running streams to resume: nothing ends them while this test runs
    for _ in range(3):
        sid = await logw.create()
        await logw.chunks(sid, ["a ", "b ", "c "])
        sids.append(sid)

    def resume(*headers: str) -> Callable[[int], bytes]:
        return lambda i: _get(host, sids[i % len(sids)], *headers)

    def chat(*headers: str, **body: Any) -> Callable[[int], bytes]:
        return lambda i: _post(host, {**CHAT, **body}, *headers)

    stall = "X-FakeAI-Fault: stall=60"
    ways: list[tuple[str, Callable[[int], bytes], Leave, bool]] = [
        ("chat, before the first byte", chat(), at_once, False),
        ("chat, after the headers", chat(), after_head, False),
        ("chat, RST after the headers", chat(), after_head, True),
        ("chat, in a stall at 0 chunks", chat(stall), after_head, False),
        ("chat, not streaming, at once", chat(stream=False), at_once, False),
        ("resume, before the first byte", resume(), at_once, False),
        ("resume, after the priming event", resume(), after_events(1), False),
        ("resume, RST after 3 events", resume(), after_events(3), True),
        ("resume, in a stall at 0 chunks", resume(stall), after_head, False),
        ("resume, in a stall after a chunk", resume(f"{stall}@1"), after_events(2), False),
        ("resume, cut by the server", resume("X-FakeAI-Disconnect-After: 2"), to_the_end, False),
    ]
    for i in range(ROUNDS):
        await asyncio.gather(
            *(_visit(port, make(i), leave, reset=reset) for _, make, leave, reset in ways)
        )

    async def released() -> bool:
        return _held(edge.state) == (0, 0, 0)

    try:
        await eventually(released, timeout_s=10)
    except AssertionError:
        keys, subs, responses = _held(edge.state)
        pytest.fail(
            f"after {ROUNDS * len(ways)} clients left, the edge still watches {keys} keys "
            f"with {subs} subscriptions and has {responses} open responses"
        )
    for sid in sids:  # the streams go on: a disconnect is not a cancel
        assert await logw.r.hget(logw.keys.meta(sid), "status") == b"running"
    # What infra/scripts/edge_rss_cycles.py reads from another process.
    await lease_producer(logw.r, logw.keys)
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
        ready = await c.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.headers["x-fakeai-hub-keys"] == "0"
    assert ready.headers["x-fakeai-hub-subscriptions"] == "0"


async def test_a_response_closed_before_its_body_ran_still_releases() -> None:
    """The case where the server decides when the body first runs: a response whose
    client was gone before its body started (a ``send`` that yields while the disconnect
    arrives), or one never run at all (the app failed after the route had returned it), runs
    its ``on_close`` once all the same."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def yielding_send(message: Any) -> None:
        await asyncio.sleep(0.01)  # the disconnect watcher runs meanwhile

    for never_run in (False, True):
        ran: list[str] = []

        async def body(ran: list[str] = ran) -> AsyncGenerator[bytes, None]:
            ran.append("body")
            yield b"data: x\n\n"

        response = EventStream(
            body(),
            headers={},
            media_type="text/event-stream",
            send_timeout=30,
            on_close=lambda ran=ran: ran.append("released"),  # type: ignore[misc]
        )

        async def failing_app(scope: Any, receive: Any, send: Any, r: Any = response) -> None:
            await r(scope, receive, send)  # deferred: RunStreamsOutside would run it
            raise RuntimeError("a middleware failed after the route returned")

        scope: dict[str, Any] = {"type": "http"}
        if never_run:
            with pytest.raises(RuntimeError):
                await RunStreamsOutside(failing_app)(scope, receive, yielding_send)
        else:
            await response.run(scope, receive, yielding_send)
        assert ran == ["released"], (never_run, ran)
