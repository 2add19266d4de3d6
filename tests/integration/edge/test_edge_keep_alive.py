"""``FAKEAI_KEEP_ALIVE_S``: an idle keep-alive connection stays usable for that long.

Clients keep idle connections in their pools (aiohttp for 15 s) and do not retry a POST sent
on one the server closed; with uvicorn's own 5 s, AIPerf at concurrency 512 lost requests that
way ("Can not write request body").
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest
from tests.support.servers import WAIT_S, wait_until

from fakeai.config import Settings
from fakeai.embedded_redis import free_port
from fakeai.services.edge.app import make_server

pytestmark = [pytest.mark.redis, pytest.mark.e2e, pytest.mark.slow]

_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _exchange(sock: socket.socket) -> bytes:
    """Send a request and read its whole response (``/healthz`` answers with a small body)."""
    sock.sendall(_REQUEST)
    got = b""
    while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_the_default_outlasts_client_pools(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(port=free_port())
    assert settings.keep_alive_s > 15  # aiohttp's idle connections live 15 s
    assert make_server(settings).config.timeout_keep_alive == settings.keep_alive_s


def test_an_idle_connection_is_reused_after_uvicorns_default(
    make_settings: Callable[..., Settings],
) -> None:
    """Idle 6 s (past uvicorn's 5 s), with the setting at 8: the second request is answered
    on the same connection."""
    port = free_port()
    server = make_server(make_settings(port=port, log_level="WARNING", keep_alive_s=8))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started)
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
            assert _exchange(sock).startswith(b"HTTP/1.1 200")
            time.sleep(6)  # the idle time under test, not a synchronization
            assert _exchange(sock).startswith(b"HTTP/1.1 200")
    finally:
        server.should_exit = True
        thread.join(15)
    assert not thread.is_alive()
