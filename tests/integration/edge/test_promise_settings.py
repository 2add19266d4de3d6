"""Edge settings that shape what a client sees, measured through HTTP on a real edge.

- ``FAKEAI_CLIENT_BUFFER``: a client that stops reading is ended with a resumable
  ``slow_consumer`` error event once that many events queue behind it (not a fixed 1024).
- ``FAKEAI_RETRY_MS``: the SSE ``retry:`` hint on the first event of every SSE response
  (the priming event of ``GET /v1/streams/{id}``, the first event of a streaming POST, the
  first named event of a stream of typed events).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager

import httpx
import pytest
from tests.integration.edge.edgekit import MODEL, Edge, LogWriter, data_events, parse_sse
from tests.support.servers import eventually

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

StartEdge = Callable[..., AbstractContextManager[Edge]]

_BUFFER = 16
"""The smallest ``client_buffer`` the settings accept."""
_PAD = "z" * 8192
"""Each chunk's text: big chunks fill the socket buffers in fewer entries."""


async def _hub_keys(edge: Edge) -> int:
    return edge.state.hub.keys


def _recv_until_done(sock: socket.socket) -> bytes:
    raw = b""
    while b"data: [DONE]\n\n" not in raw:
        part = sock.recv(1 << 16)
        assert part, "connection closed without the end marker"
        raw += part
    return raw


async def _open(sock: socket.socket, logw: LogWriter, route: str) -> str:
    """Send the request of ``route`` (a replay of a new stream, or a streaming POST) on
    ``sock``; returns the stream id."""
    if route == "get":
        sid = await logw.create()
        sock.sendall(f"GET /v1/streams/{sid} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return sid
    body = json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    ).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return (await logw.take_request()).stream_id


@pytest.mark.parametrize("route", ["get", "post"])
async def test_a_client_that_stops_reading_is_ended_after_client_buffer_events(
    start_edge: StartEdge, logw: LogWriter, route: str
) -> None:
    """Entries are appended one at a time to a stream whose client reads nothing; the edge
    gives up on the client once ``client_buffer`` entries queue behind what it could send.
    The client then reads what it was sent: the events it lost are ``client_buffer`` and the
    few appended while the overflow was being noticed, far from 1024."""
    with start_edge(client_buffer=_BUFFER) as edge:
        host, port = edge.url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small receive window
        sock.connect((host, int(port)))
        try:
            sid = await _open(sock, logw, route)
            await eventually(lambda: _hub_keys(edge))
            written = 0
            while edge.state.hub.overflows == 0:
                await logw.chunks(sid, [_PAD])
                written += 1
                assert written < 20_000, "the edge never saw the client fall behind"
            await logw.done(sid)
            sock.settimeout(10)
            raw = await asyncio.to_thread(_recv_until_done, sock)
        finally:
            sock.close()
    events = parse_sse(raw.split(b"\r\n\r\n", 1)[1].decode())
    chunks = [e for e in data_events(events) if e.id is not None]
    last_seq = int((chunks[-1].id or "").rpartition("-")[2]) if chunks else 0
    error = json.loads(data_events(events)[-2].data or "")["error"]
    assert error["code"] == "slow_consumer"
    assert f"more than {_BUFFER} events" in error["message"]
    assert "Last-Event-ID" in error["message"]
    lost = written - last_seq
    # At least client_buffer + 1 (what overflows the queue); a margin for the entries
    # appended while the test polled, still far below 1024.
    assert _BUFFER < lost <= _BUFFER + 200, (written, last_seq)


def _first_event_retry(text: str) -> int | None:
    return parse_sse(text)[0].retry


async def test_the_retry_hint_is_retry_ms_on_every_sse_response(
    start_edge: StartEdge, logw: LogWriter
) -> None:
    retry_ms = 1234
    with start_edge(retry_ms=retry_ms) as edge:
        chat_sid, ids, _ = await logw.finished(2)
        events_sid = await logw.create(kind="responses")
        await logw.add(events_sid, b"c", b'{"type":"response.created","sequence_number":0}')
        await logw.done(events_sid)
        async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
            replay = await c.get(f"/v1/streams/{chat_sid}")
            resumed = await c.get(f"/v1/streams/{chat_sid}", headers={"Last-Event-ID": ids[0]})
            typed = await c.get(f"/v1/streams/{events_sid}")
            body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
            post = asyncio.create_task(
                c.post("/v1/chat/completions", json={**body, "stream": True})
            )
            req = await logw.take_request()
            await logw.chunks(req.stream_id, ["a"])
            await logw.done(req.stream_id)
            live = await asyncio.wait_for(post, 10)
    for name, resp in [("replay", replay), ("resumed", resumed), ("typed", typed), ("post", live)]:
        assert resp.status_code == 200, (name, resp.text)
        assert _first_event_retry(resp.text) == retry_ms, (name, resp.text[:200])
        assert resp.text.count("retry:") == 1, name  # on the first event only
