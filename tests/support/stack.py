"""Start the whole pipeline in-process for end-to-end tests: producers, an edge, and
optionally the metrics consumer.

Each producer runs ``fakeai.services.producer.service.run`` (the metrics consumer
``fakeai.services.metrics.service.run``) on its own event loop in a thread (the way it runs in
its own process in production); the edge runs under real uvicorn
(:func:`tests.support.servers.run_asgi`). Everything talks through the test's Redis under the
test's key prefix, and everything is stopped, in order, when the ``with`` block ends: the edge
first (stop intake), then the producers.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from starlette.applications import Starlette
from tests.support.servers import run_asgi, wait_attached

from fakeai.config import Settings
from fakeai.services.edge import create_app
from fakeai.services.metrics.service import run as run_metrics
from fakeai.services.producer.service import run as run_producer

__all__ = ["Stack", "run_stack"]


class _ServiceThread:
    """One service on its own loop; :meth:`stop` sets its stop event and joins."""

    def __init__(self, settings: Settings, name: str, metrics: bool = False) -> None:
        self._settings = settings
        self._metrics = metrics
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def _main(self) -> None:
        async def body() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            if self._metrics:
                await run_metrics(self._settings, stop=self._stop)
            else:
                await run_producer(self._settings, stop=self._stop, drain_s=1.0)

        try:
            asyncio.run(body())
        except BaseException as e:  # reported by stop(), so a test sees it
            self.error = e
        finally:
            self._ready.set()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError(f"{self._thread.name} thread did not start")

    def stop(self, timeout_s: float = 15.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop already finished
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"{self._thread.name} did not stop in time")
        if self.error is not None:
            raise RuntimeError(f"{self._thread.name} failed") from self.error


@dataclass(frozen=True)
class Stack:
    url: str
    settings: Settings
    app: Starlette


@contextlib.contextmanager
def run_stack(settings: Settings, *, producers: int = 1, metrics: bool = False) -> Iterator[Stack]:
    """``with run_stack(settings) as stack:`` producers + edge (+ the metrics consumer), on
    ``stack.url``."""
    threads = [_ServiceThread(settings, f"producer-{i}") for i in range(producers)]
    if metrics:
        threads.append(_ServiceThread(settings, "metrics", metrics=True))
    try:
        for t in threads:
            t.start()
        app = create_app(settings)
        with run_asgi(app) as url:
            wait_attached(url, producers=producers > 0)
            yield Stack(url, settings, app)
    finally:
        errors = []
        for t in threads:
            try:
                t.stop()
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]
