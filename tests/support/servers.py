"""Run real servers for tests: an ASGI app under real uvicorn on a free loopback port.

``httpx.ASGITransport`` buffers whole responses, so endless SSE needs a real server.

Deadlines here are how long to wait for something that must happen, not how fast it must
happen: a passing test returns as soon as it does. They are generous (15 s by default) so a
test that gets little CPU on a loaded machine still passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import uvicorn

from fakeai.embedded_redis import free_port

T = TypeVar("T")

WAIT_S = 15.0
"""The default deadline of :func:`eventually` and :func:`wait_until`."""


@contextlib.contextmanager
def run_asgi(app: Any, *, timeout_s: float = 30.0, **config: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread (its own event loop); yield its base URL."""
    port = free_port()
    cfg = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **config
    )
    server = uvicorn.Server(cfg)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn exited during start-up")
        if time.monotonic() > deadline:
            raise TimeoutError("uvicorn did not start in time")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout_s)


def wait_attached(base_url: str, *, producers: bool, timeout_s: float = WAIT_S) -> None:
    """Wait until the edge at ``base_url`` serves with Redis attached: ``/readyz`` 200, or,
    when no producer runs, a 503 whose code is not ``redis_unavailable``. An edge that cannot
    reach Redis in time at start-up (a starved machine) starts anyway and answers 503 until
    it can; a test waits for that, as a deployment's readiness probe would."""

    def attached() -> bool:
        try:
            resp = httpx.get(f"{base_url}/readyz", timeout=5)
        except httpx.HTTPError:
            return False
        if resp.status_code == 200:
            return True
        return not producers and resp.json()["error"]["code"] != "redis_unavailable"

    wait_until(attached, timeout_s=timeout_s, interval_s=0.05)


async def eventually(
    check: Callable[[], Awaitable[T]], *, timeout_s: float = WAIT_S, interval_s: float = 0.01
) -> T:
    """Poll ``check`` until it returns a truthy value; fail with its last value at the deadline."""
    deadline = time.monotonic() + timeout_s
    last: T = await check()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last value {last!r})")
        await asyncio.sleep(interval_s)
        last = await check()
    return last


def wait_until(check: Callable[[], T], *, timeout_s: float = WAIT_S, interval_s: float = 0.01) -> T:
    """Synchronous :func:`eventually`."""
    deadline = time.monotonic() + timeout_s
    last = check()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last value {last!r})")
        time.sleep(interval_s)
        last = check()
    return last
