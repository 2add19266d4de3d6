"""Shutdown ends live client streams with a resumable error event, never a silent close."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import pytest
from tests.integration.edge.edgekit import LogWriter, data_events, parse_sse
from tests.support.servers import wait_until

from fakeai.config import Settings
from fakeai.embedded_redis import free_port
from fakeai.services.edge.app import make_server

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


async def test_shutdown_ends_live_streams_with_a_resumable_error_event(
    make_settings: Callable[..., Settings], logw: LogWriter
) -> None:
    port = free_port()
    server = make_server(make_settings(port=port, log_level="WARNING"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started)
    url = f"http://127.0.0.1:{port}"
    sid = await logw.create()
    ids = await logw.chunks(sid, ["a", "b"])
    try:
        async with (
            httpx.AsyncClient(base_url=url, timeout=10) as c,
            c.stream("GET", f"/v1/streams/{sid}") as resp,
        ):
            seen = ""
            async for text in resp.aiter_text():
                seen += text
                if ids[-1] in seen:
                    server.should_exit = True
    finally:
        server.should_exit = True
        thread.join(15)
    events = data_events(parse_sse(seen))
    assert [e.id for e in events] == [*ids, None, None]
    assert '"code":"edge_shutdown"' in (events[2].data or "")
    assert events[3].data == "[DONE]"
    assert not thread.is_alive()
