"""SampleRecorder: cheap in-process sample and counter recording, flushed to Redis in batches.

The edge calls :meth:`SampleRecorder.add` per chunk it writes (``edge_ttft``, ``pipeline_lag``)
and :meth:`SampleRecorder.incr` per event (``client_disconnects``). Both only fold into memory;
:meth:`SampleRecorder.run` flushes every interval with one pipeline, in the same layout as the
metrics consumer (fakeai.timeseries.store), so the latency endpoint reads both alike.

Delivery: at-most-once per flush. A flush that fails (Redis away) keeps its data for the next
flush, up to a bound; beyond it the oldest pending data is dropped with a warning, so an outage
never grows memory without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import redis.asyncio as aredis
from redis.exceptions import RedisError

from fakeai.config import Settings
from fakeai.streams import Keys
from fakeai.timeseries.store import Fold

__all__ = ["SampleRecorder"]

logger = logging.getLogger(__name__)

_MAX_PENDING_BUCKETS = 50_000
"""Pending (metric, model, second) sketches kept across failed flushes before dropping."""


class SampleRecorder:
    """Folds samples in memory; :meth:`flush` writes them in one pipeline.

    ``add`` and ``incr`` are synchronous and O(1): safe to call per chunk from the event loop.
    """

    def __init__(self, redis: aredis.Redis, keys: Keys, settings: Settings) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._fold = Fold(settings.ts_fine_s)
        self._lock = asyncio.Lock()

    def add(self, metric: str, model: str, value: float, at: float | None = None) -> None:
        """Record one sample (seconds for latencies) at Unix time ``at`` (default: now)."""
        self._fold.add(metric, model, value, time.time() if at is None else at)

    def incr(self, counter: str, model: str, n: int = 1) -> None:
        """Add ``n`` to a counter of ``model`` (for example ``client_disconnects``)."""
        self._fold.incr(counter, model, n)

    @property
    def pending(self) -> bool:
        """Whether anything waits for the next flush."""
        return bool(self._fold)

    async def flush(self) -> None:
        """Write everything folded so far in one pipeline; raises RedisError on failure.

        On failure the data stays pending (bounded) and the next flush retries it.
        """
        async with self._lock:
            fold, self._fold = self._fold, Fold(self._settings.ts_fine_s)
            if not fold:
                return
            pipe = self._redis.pipeline(transaction=False)
            fold.write(pipe, self._keys, self._settings)
            try:
                await pipe.execute()
            except (RedisError, OSError):
                if len(fold.samples) + len(self._fold.samples) <= _MAX_PENDING_BUCKETS:
                    fold.merge(self._fold)
                    self._fold = fold
                else:
                    logger.warning(
                        "dropping %d pending metric buckets after a failed flush",
                        len(fold.samples),
                    )
                raise

    async def run(self, interval_s: float = 1.0) -> None:
        """Flush every ``interval_s`` until cancelled; flush once more on cancellation."""
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        try:
            while True:
                await asyncio.sleep(interval_s)
                try:
                    await self.flush()
                except (RedisError, OSError) as e:
                    logger.warning("metric flush failed (will retry): %s", e)
        finally:
            # Shutdown path: one last attempt, best effort (Redis may already be gone).
            with contextlib.suppress(RedisError, OSError):
                await asyncio.shield(self.flush())
