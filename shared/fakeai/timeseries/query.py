"""Latency over a recent window, from the bucket hashes (one pipeline for all bucket reads).

A model's buckets share its hash tag; the one pipeline of bucket reads is split per node by a
Redis Cluster client.

Bucket choice (:func:`plan_buckets`): a window within fine retention reads the coarse buckets
that lie wholly inside it and fine buckets for the two ragged ends, so a one-hour window costs
about 60 + 2·60 reads per series instead of 3600, and stays exact to the fine resolution. A
longer window reads coarse buckets only (its start is rounded down to a coarse boundary).
"""

from __future__ import annotations

import math
import time
from typing import Any

from fakeai.config import Settings
from fakeai.errors import BadRequest
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient
from fakeai.timeseries.names import EDGE_METRICS, PRODUCER_METRICS, QUANTILES
from fakeai.timeseries.sketch import LogSketch
from fakeai.timeseries.store import COARSE, FINE, sketch_from_hash

__all__ = [
    "LATENCY_METRICS",
    "parse_seconds",
    "parse_window",
    "plan_buckets",
    "query_latency",
]

LATENCY_METRICS = (*PRODUCER_METRICS, *EDGE_METRICS)

DEFAULT_WINDOW_S = 60.0


def parse_seconds(
    raw: str | None, param: str, expected: str, upper: float = math.inf
) -> float | None:
    """A query parameter in seconds, in (0, ``upper``], or None when absent or empty;
    BadRequest (``param``, code ``invalid_<param>``) saying ``expected`` otherwise."""
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= upper):
        raise BadRequest(
            f"{param} must be {expected}, got {raw!r}", param=param, code=f"invalid_{param}"
        )
    return value


def parse_window(raw: str | None, settings: Settings) -> float:
    """The ``window`` query parameter in seconds; BadRequest (param ``window``) when invalid."""
    keep = settings.ts_coarse_keep_s
    expected = f"a number of seconds in (0, {keep}] (the coarse retention)"
    value = parse_seconds(raw, "window", expected, keep)
    return DEFAULT_WINDOW_S if value is None else value


def plan_buckets(now: float, window_s: float, settings: Settings) -> list[tuple[str, int]]:
    """The (resolution, bucket start) pairs covering ``[now - window_s, now]``."""
    fine, coarse = settings.ts_fine_s, settings.ts_coarse_s
    start = now - window_s
    if window_s > settings.ts_fine_keep_s:
        first = int(start // coarse) * coarse
        last = int(now // coarse) * coarse
        return [(COARSE, b) for b in range(first, last + 1, coarse)]
    f_first = int(start // fine) * fine
    f_end = int(now // fine) * fine + fine  # exclusive
    c_first = -(-f_first // coarse) * coarse  # first coarse boundary >= f_first
    c_end = f_end // coarse * coarse  # last coarse boundary <= f_end
    if c_first >= c_end:
        return [(FINE, b) for b in range(f_first, f_end, fine)]
    return [
        *((FINE, b) for b in range(f_first, c_first, fine)),
        *((COARSE, b) for b in range(c_first, c_end, coarse)),
        *((FINE, b) for b in range(c_end, f_end, fine)),
    ]


async def query_latency(
    redis: RedisClient,
    keys: Keys,
    settings: Settings,
    *,
    model: str | None,
    window_s: float,
    now: float | None = None,
) -> dict[str, Any]:
    """count, mean, min, max, p50, p90, p95, p99 per latency metric over the last ``window_s``.

    Returns ``{"window_s", "models": {model: {metric: summary}}, "all": {metric: summary}}``;
    an unknown model gives empty ``models`` and zero counts, not an error.
    """
    if not (math.isfinite(window_s) and window_s > 0):
        raise ValueError(f"window_s must be a finite number > 0, got {window_s!r}")
    now = time.time() if now is None else now
    known = {
        m.decode() if isinstance(m, bytes) else str(m)
        for m in await redis.smembers(keys.ts_models())
    }
    models = sorted(known) if model is None else ([model] if model in known else [])
    plan = plan_buckets(now, window_s, settings)
    pipe = redis.pipeline(transaction=False)
    for m in models:
        for metric in LATENCY_METRICS:
            for res, b in plan:
                pipe.hgetall(keys.ts_bucket(metric, m, res, b))
                pipe.zmscore(keys.ts_minmax(metric, m, res, b), ["min", "max"])
    replies = await pipe.execute() if models else []
    per_model: dict[str, dict[str, Any]] = {}
    merged = {metric: LogSketch() for metric in LATENCY_METRICS}
    i = 0
    for m in models:
        out: dict[str, Any] = {}
        for metric in LATENCY_METRICS:
            s = LogSketch()
            for _ in plan:
                s.merge(sketch_from_hash(replies[i], replies[i + 1]))
                i += 2
            merged[metric].merge(s)
            out[metric] = s.summary(QUANTILES)
        per_model[m] = out
    return {
        "window_s": window_s,
        "resolution_s": settings.ts_fine_s
        if window_s <= settings.ts_fine_keep_s
        else settings.ts_coarse_s,
        "models": per_model,
        "all": {metric: s.summary(QUANTILES) for metric, s in merged.items()},
    }
