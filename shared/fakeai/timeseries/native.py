"""Optional RedisTimeSeries backend: per-bucket aggregates as native series, beside the bins.

Detected once at start with ``TS.INFO <probe key>``: a server without the module answers
"unknown command" (a Redis Cluster client refuses the command itself: it is not in the
server's COMMAND table); one with it answers "TSDB: the key does not exist"
(notes/redis-faststream.md §3.3). A series' keys carry its model's hash tag
(``Keys.ts_native``), so a compaction rule never spans slots. When present, every flush also
writes, per (metric, model) and fine bucket, three raw series (``count`` and ``sum`` with
DUPLICATE_POLICY SUM, ``max`` with MAX) and coarse compactions of each
(``TS.CREATERULE ... AGGREGATION sum|max <coarse ms>``,
https://redis.io/docs/latest/commands/ts.createrule/). RedisTimeSeries has no percentile
aggregator, so the log bins stay the source of quantiles either way; the native series are for
tools that speak TS.MRANGE (Grafana's Redis data source), filtered by the labels
``fakeai_metric``, ``fakeai_model`` and ``fakeai_kind``.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError, ResponseError

from fakeai.config import Settings
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient
from fakeai.timeseries.store import Fold

__all__ = ["NativeSeries"]

logger = logging.getLogger(__name__)

_KINDS = (("count", "SUM", "sum"), ("sum", "SUM", "sum"), ("max", "MAX", "max"))
"""(kind, duplicate policy of the raw series, aggregation of its compaction)."""


class NativeSeries:
    """Writes fold aggregates to RedisTimeSeries; create with :meth:`detect`."""

    def __init__(self, redis: RedisClient, keys: Keys, settings: Settings) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._created: set[tuple[str, str]] = set()

    @classmethod
    async def detect(
        cls, redis: RedisClient, keys: Keys, settings: Settings
    ) -> NativeSeries | None:
        """A backend when the server has RedisTimeSeries, else None (nothing is attempted)."""
        try:
            probe = keys.ts_native("__probe__", "__probe__", "raw")
            await redis.execute_command("TS.INFO", probe)
        except ResponseError as e:
            if "unknown command" in str(e).lower():
                return None
            # "TSDB: the key does not exist": the module is loaded.
        except RedisError as e:
            # A cluster client routes by the key positions of the server's COMMAND table and
            # refuses, before sending, a command that is not in it: no module.
            if "doesn't exist" in str(e):
                return None
            raise
        return cls(redis, keys, settings)

    async def _ensure(self, metric: str, model: str) -> None:
        if (metric, model) in self._created:
            return
        s = self._settings
        pipe = self._redis.pipeline(transaction=False)
        for kind, policy, agg in _KINDS:
            raw = self._keys.ts_native(metric, model, kind)
            coarse = self._keys.ts_native(metric, model, f"{kind}:coarse")
            labels = ["fakeai_metric", metric, "fakeai_model", model]
            pipe.execute_command(
                "TS.CREATE", raw, "RETENTION", s.ts_fine_keep_s * 1000,
                "DUPLICATE_POLICY", policy, "LABELS", *labels, "fakeai_kind", kind,
            )  # fmt: skip
            pipe.execute_command(
                "TS.CREATE", coarse, "RETENTION", s.ts_coarse_keep_s * 1000,
                "LABELS", *labels, "fakeai_kind", f"{kind}:coarse",
            )  # fmt: skip
            pipe.execute_command(
                "TS.CREATERULE", raw, coarse, "AGGREGATION", agg, s.ts_coarse_s * 1000
            )
        for reply in await pipe.execute(raise_on_error=False):
            # Another writer created them first: fine. Anything else is a real failure.
            if isinstance(reply, ResponseError) and "already exists" not in str(reply).lower():
                raise reply
        self._created.add((metric, model))

    async def write(self, fold: Fold) -> None:
        """Add the fold's per-bucket count, sum and max; logs and skips on Redis errors."""
        try:
            for metric, model, _ in fold.samples:
                await self._ensure(metric, model)
            pipe = self._redis.pipeline(transaction=False)
            for (metric, model, bucket), sk in fold.samples.items():
                ts = bucket * 1000
                for kind, value in (("count", sk.n), ("sum", sk.total), ("max", sk.max)):
                    pipe.execute_command(
                        "TS.ADD", self._keys.ts_native(metric, model, kind), ts, value
                    )
            await pipe.execute()
        except RedisError as e:
            logger.warning("RedisTimeSeries write failed (bins are unaffected): %s", e)
