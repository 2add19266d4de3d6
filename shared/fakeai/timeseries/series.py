"""Latency percentiles over time: one point per step, from the bucket hashes (for charts).

Where :mod:`.query` folds a whole window into one summary, this module folds each ``step`` of
the window into one point (count, mean, p50, p90, p99), per model. Points read the bucket
hashes only, not their min/max zsets, so a quantile is the bin's representative value (within
≈2 %, :mod:`.sketch`) without the clamp to the exact extremes that :mod:`.query` applies.

Plan (:func:`plan_series`, pure): a step is a whole number of buckets of one resolution, and
points start at multiples of the step, so every bucket falls in exactly one point.

- ``fine`` buckets (``ts_fine_s``) when the window lies within fine retention and the step is
  shorter than a coarse bucket;
- ``coarse`` buckets (``ts_coarse_s``) otherwise: a window longer than fine retention, or a
  step of a coarse bucket or more. Coarse buckets are written with the fine ones (one fold,
  :meth:`fakeai.timeseries.store.Fold.write`), so the newest coarse point is as fresh as a
  fine one.

The step asked for is cut to the window and rounded up to a whole number of buckets; without
one, the window is cut into about :data:`DEFAULT_POINTS` points (one more where the window
does not start on a step). A window of more than :data:`MAX_POINTS` steps is refused (400,
``param: "step"``). So one query reads about ``window / resolution`` bucket hashes per model:
at most 3,600 fine ones (an hour), or ``ts_coarse_keep_s / ts_coarse_s`` coarse ones (10,080
for a week of minutes).

Reads: one pipeline of HGETALLs; a model's buckets share its hash tag, and a cluster client
splits the pipeline per node. Points are returned only where samples exist.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from fakeai.config import Settings
from fakeai.errors import BadRequest
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient
from fakeai.timeseries.names import TOKENS_PER_S
from fakeai.timeseries.query import LATENCY_METRICS, parse_seconds
from fakeai.timeseries.sketch import LogSketch
from fakeai.timeseries.store import COARSE, FINE, sketch_from_hash

__all__ = [
    "DEFAULT_POINTS",
    "MAX_POINTS",
    "SERIES_QUANTILES",
    "SeriesPlan",
    "parse_metric",
    "parse_step",
    "plan_series",
    "query_series",
]

DEFAULT_POINTS = 60
"""Points of a series when no step is asked for."""
MAX_POINTS = 1000
"""The most points one query may ask for (``window / step``)."""
SERIES_QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


@dataclass(frozen=True, slots=True)
class SeriesPlan:
    """Which buckets make which points (:func:`plan_series`)."""

    resolution: str
    """``fine`` or ``coarse``."""
    resolution_s: int
    step_s: int
    """A whole number of ``resolution_s``."""
    first: int
    """Start (Unix s) of the first point: a multiple of ``step_s``."""
    points: int

    @property
    def starts(self) -> range:
        """Each point's start (Unix s)."""
        return range(self.first, self.first + self.points * self.step_s, self.step_s)

    def buckets(self, start: int) -> range:
        """The bucket starts that make the point starting at ``start``."""
        return range(start, start + self.step_s, self.resolution_s)


def parse_metric(raw: str | None) -> str:
    """The ``metric`` query parameter (required): one of :data:`LATENCY_METRICS`."""
    if raw not in LATENCY_METRICS:
        raise BadRequest(
            f"metric: expected one of {', '.join(LATENCY_METRICS)}; got {raw!r}",
            param="metric",
            code="invalid_metric",
        )
    return raw


def parse_step(raw: str | None) -> float | None:
    """The ``step`` query parameter in seconds (None: choose one); > 0 and finite."""
    return parse_seconds(raw, "step", "a positive number of seconds")


def plan_series(
    now: float, window_s: float, step_s: float | None, settings: Settings
) -> SeriesPlan:
    """The points covering ``[now - window_s, now]`` (module docstring); BadRequest (param
    ``step``) when that would be more than :data:`MAX_POINTS` points."""
    # A step longer than the window would only read buckets outside it.
    wanted = min(step_s, window_s) if step_s is not None else window_s / DEFAULT_POINTS
    if window_s > settings.ts_fine_keep_s or wanted >= settings.ts_coarse_s:
        resolution, res_s = COARSE, settings.ts_coarse_s
    else:
        resolution, res_s = FINE, settings.ts_fine_s
    step = max(1, math.ceil(wanted / res_s)) * res_s
    first = int((now - window_s) // step) * step
    last = int(now // step) * step
    if window_s / step > MAX_POINTS:
        raise BadRequest(
            f"a step of {step} s cuts a {window_s} s window into more than {MAX_POINTS} "
            f"points: ask for a step of at least {math.ceil(window_s / MAX_POINTS)} s",
            param="step",
            code="invalid_step",
        )
    return SeriesPlan(resolution, res_s, step, first, (last - first) // step + 1)


def _point(start: int, s: LogSketch) -> dict[str, Any]:
    summary = s.summary(SERIES_QUANTILES)
    return {
        "t": start,
        "count": summary["count"],
        "mean": summary["mean"],
        **{name: summary[name] for name in SERIES_QUANTILES},
    }


async def query_series(
    redis: RedisClient,
    keys: Keys,
    settings: Settings,
    *,
    metric: str,
    model: str | None,
    window_s: float,
    step_s: float | None,
    now: float | None = None,
) -> dict[str, Any]:
    """One point per step and model over the last ``window_s`` (module docstring).

    Returns ``{"object": "metrics.series", "metric", "unit", "window_s", "step_s",
    "resolution_s", "start", "end", "models": {model: [point, ...]}}``, each point
    ``{"t", "count", "mean", "p50", "p90", "p99"}`` (values in ``unit``), only where
    samples exist. An unknown model gives empty ``models``, not an error.
    """
    now = time.time() if now is None else now
    plan = plan_series(now, window_s, step_s, settings)
    known = sorted(
        m.decode() if isinstance(m, bytes) else str(m)
        for m in await redis.smembers(keys.ts_models())
    )
    models = known if model is None else [m for m in known if m == model]
    pipe = redis.pipeline(transaction=False)
    for m in models:
        for start in plan.starts:
            for b in plan.buckets(start):
                pipe.hgetall(keys.ts_bucket(metric, m, plan.resolution, b))
    replies: list[Any] = await pipe.execute() if models else []
    out: dict[str, list[dict[str, Any]]] = {}
    i = 0
    for m in models:
        points = []
        for start in plan.starts:
            s = LogSketch()
            for _ in plan.buckets(start):
                s.merge(sketch_from_hash(replies[i]))
                i += 1
            if s.n:
                points.append(_point(start, s))
        out[m] = points
    return {
        "object": "metrics.series",
        "metric": metric,
        "unit": "tokens/s" if metric == TOKENS_PER_S else "s",
        "window_s": window_s,
        "step_s": plan.step_s,
        "resolution_s": plan.resolution_s,
        "start": now - window_s,
        "end": now,
        "models": out,
    }
