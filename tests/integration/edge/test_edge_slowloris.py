"""Issue 10, finding 2 (slowloris): a connection that sends no complete request head within
``idle_timeout_s`` is answered 408 and closed; a request whose head did arrive is not timed
(an SSE stream may stay open as long as its stream runs)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import httpx
import pytest
from tests.integration.edge.edgekit import Edge, LogWriter, data_events, parse_sse

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

StartEdge = Callable[..., AbstractContextManager[Edge]]

IDLE_S = 0.5


def _connect(edge: Edge) -> socket.socket:
    host, port = edge.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(15)  # a deadline for the test, far beyond IDLE_S
    return sock


def _until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed."""
    got = b""
    while part := sock.recv(65536):
        got += part
    return got, time.monotonic()


@pytest.mark.parametrize(
    "partial",
    [b"", b"GET /v1/mod", b"GET /v1/models HTTP/1.1\r\nHost: x\r\n"],
    ids=["nothing", "partial-request-line", "headers-without-end"],
)
async def test_a_connection_that_never_completes_its_request_head_is_closed(
    start_edge: StartEdge, partial: bytes
) -> None:
    with start_edge(idle_timeout_s=IDLE_S) as edge:
        sock = _connect(edge)
        try:
            opened = time.monotonic()
            sock.sendall(partial)
            got, closed = await asyncio.to_thread(_until_closed, sock)
        finally:
            sock.close()
    assert got.startswith(b"HTTP/1.1 408 "), got
    assert b'"code": "request_timeout"' in got
    assert closed - opened >= IDLE_S - 0.05


async def test_a_partial_second_request_on_a_kept_alive_connection_is_closed(
    start_edge: StartEdge,
) -> None:
    with start_edge(idle_timeout_s=IDLE_S) as edge:
        sock = _connect(edge)
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            first = b""
            while b'{"status":"ok"}' not in first:
                part = await asyncio.to_thread(sock.recv, 65536)
                assert part, "closed before the first response"
                first += part
            assert first.startswith(b"HTTP/1.1 200 ")
            sock.sendall(b"GET /heal")
            got, _ = await asyncio.to_thread(_until_closed, sock)
        finally:
            sock.close()
    assert got.startswith(b"HTTP/1.1 408 "), got


async def test_a_stream_longer_than_the_head_timeout_is_not_cut(
    start_edge: StartEdge, logw: LogWriter
) -> None:
    with start_edge(idle_timeout_s=0.2) as edge:
        sid = await logw.create()
        async with (
            httpx.AsyncClient(base_url=edge.url, timeout=10) as c,
            c.stream("GET", f"/v1/streams/{sid}") as resp,
        ):
            assert resp.status_code == 200
            await asyncio.sleep(1.0)  # the stimulus: five head timeouts pass mid-response
            ids = await logw.chunks(sid, ["a", "b"])
            done = await logw.done(sid)
            raw = (await resp.aread()).decode()
    assert [e.id for e in data_events(parse_sse(raw))] == [*ids, done]
