"""SampleRecorder: cheap in-process sample and counter recording, flushed to Redis in batches.

The edge calls :meth:`SampleRecorder.add` per chunk it writes (``edge_ttft``, ``pipeline_lag``)
and :meth:`SampleRecorder.incr` per event (``client_disconnects``). Both only fold into memory;
:meth:`SampleRecorder.run` flushes every interval, in the same layout as the metrics consumer
(fakeai.timeseries.store), so the latency endpoint reads both alike.

A flush adds the models to ``Keys.ts_models()``, then writes each model in its own pipeline (a
model's keys share one hash tag, so one pipeline goes to one node of a Redis Cluster), the
models concurrently. A model whose write fails (Redis away, its node failing over) keeps its
data for the next flush, up to a bound; beyond it the pending data is dropped with a warning,
so an outage never grows memory without limit. The models written stay written: a partial
failure on a cluster does not count them again. Delivery is best effort: a pipeline cut off
half-way may be applied in part and then again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.exceptions import RedisClusterException, RedisError

from fakeai.config import Settings
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient
from fakeai.timeseries.store import Fold

__all__ = ["SampleRecorder"]

logger = logging.getLogger(__name__)

_MAX_PENDING_BUCKETS = 50_000
"""Pending (metric, model, second) sketches kept across failed flushes before dropping."""

_OUTAGE = (RedisError, RedisClusterException, OSError)
"""A flush that failed for these is kept and retried (``RedisClusterException`` is not a
``RedisError``: a cluster client raises it for a slot no node serves, during a failover)."""


class SampleRecorder:
    """Folds samples in memory; :meth:`flush` writes them (one pipeline per model).

    ``add`` and ``incr`` are synchronous and O(1): safe to call per chunk from the event loop.
    """

    def __init__(self, redis: RedisClient, keys: Keys, settings: Settings) -> None:
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
        """Register the models, then write each in its own pipeline; raises RedisError (or
        OSError) when something failed.

        On failure the models not written stay pending (bounded) and the next flush retries them.
        """
        async with self._lock:
            fold, self._fold = self._fold, Fold(self._settings.ts_fine_s)
            if not fold:
                return
            try:
                # First, and idempotent: a model listed before its data is harmless.
                pipe = self._redis.pipeline(transaction=False)
                fold.register(pipe, self._keys)
                await pipe.execute()
            except _OUTAGE:
                self._keep(fold)
                raise
            models = fold.models
            results = await asyncio.gather(
                *(self._write_model(fold, m) for m in models), return_exceptions=True
            )
            errors = {m: r for m, r in zip(models, results, strict=True) if r is not None}
            if not errors:
                return
            self._keep(fold.select(errors))
            for error in errors.values():
                if not isinstance(error, _OUTAGE):
                    raise error  # a bug, not an outage
            raise next(iter(errors.values()))

    def _keep(self, pending: Fold) -> None:
        """Put ``pending`` back for the next flush, unless that grows past the bound."""
        if len(pending.samples) + len(self._fold.samples) <= _MAX_PENDING_BUCKETS:
            pending.merge(self._fold)
            self._fold = pending
        else:
            logger.warning(
                "dropping %d pending metric buckets after a failed flush", len(pending.samples)
            )

    async def _write_model(self, fold: Fold, model: str) -> None:
        pipe = self._redis.pipeline(transaction=False)
        fold.write(pipe, self._keys, self._settings, model)
        await pipe.execute()

    async def run(self, interval_s: float = 1.0) -> None:
        """Flush every ``interval_s`` until cancelled; flush once more on cancellation."""
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        try:
            while True:
                await asyncio.sleep(interval_s)
                try:
                    await self.flush()
                except _OUTAGE as e:
                    logger.warning("metric flush failed (will retry): %s", e)
        finally:
            # Shutdown path: one last attempt, best effort (Redis may already be gone).
            with contextlib.suppress(*_OUTAGE):
                await asyncio.shield(self.flush())
