"""The dashboard's live feed ends: after ``max_stream_s`` (``end``), and at shutdown with an
error event; never a silent close (real uvicorn, real Redis)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from tests.conftest import BOTH
from tests.integration.edge.edgekit import Edge
from tests.support.servers import wait_until

from fakeai.config import Settings
from fakeai.embedded_redis import free_port
from fakeai.services.edge.app import make_server

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


async def _events(url: str, until: Callable[[str], bool] | None = None) -> list[tuple[str, Any]]:
    """Read the feed to its end; ``until(event name)`` is called after each event."""
    out: list[tuple[str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=url, timeout=10) as c,
        aconnect_sse(c, "GET", "/v1/dashboard/events") as source,
    ):
        assert source.response.status_code == 200
        async for e in source.aiter_sse():
            out.append((e.event, json.loads(e.data)))
            if until is not None:
                until(e.event)
    return out


@BOTH
async def test_feed_ends_after_max_stream_s(
    start_edge: Callable[..., contextlib.AbstractContextManager[Edge]],
) -> None:
    with start_edge(max_stream_s=1) as edge:
        events = await _events(edge.url)
    names = [name for name, _ in events]
    assert names[0] == "snapshot"
    assert "groups" in names
    assert events[-1] == ("end", {"reason": "max_stream_s"})


async def test_shutdown_ends_the_feed_with_an_error_event(
    make_settings: Callable[..., Settings],
) -> None:
    port = free_port()
    server = make_server(make_settings(port=port, log_level="WARNING"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started)

    def stop_after_snapshot(name: str) -> None:
        if name == "snapshot":
            server.should_exit = True

    try:
        events = await _events(f"http://127.0.0.1:{port}", stop_after_snapshot)
    finally:
        server.should_exit = True
        thread.join(15)
    name, body = events[-1]
    assert name == "error"
    assert body["error"]["code"] == "shutting_down"
    assert not thread.is_alive()


def test_feed_without_redis_is_a_503_before_streaming(start_edge: Any) -> None:
    dead = f"redis://127.0.0.1:{free_port()}"
    with start_edge(redis_url=dead) as edge:
        r = httpx.get(f"{edge.url}/v1/dashboard/events", timeout=10)
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "redis_unavailable"
    assert "retry-after" in r.headers
