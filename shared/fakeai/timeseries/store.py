"""The Redis layout of the time series, and the in-memory fold that writes it in one pipeline.

Per (metric, model, resolution, bucket start) one hash (``Keys.ts_bucket``)::

    n     sample count              (HINCRBY)
    sum   sum of the samples        (HINCRBYFLOAT)
    z     zero-bin count            (HINCRBY)
    b<i>  count of log bin i        (HINCRBY; see fakeai.timeseries.sketch)

plus a zset ``Keys.ts_minmax`` with members ``min`` and ``max`` kept by ``ZADD LT`` / ``ZADD GT``
(https://redis.io/docs/latest/commands/zadd/: LT only lowers a score, GT only raises it; both
add a missing member), so concurrent writers keep exact extremes without Lua.

Resolutions: ``fine`` (``ts_fine_s`` buckets, expire ``ts_fine_keep_s`` after their end),
``coarse`` (``ts_coarse_s``, ``ts_coarse_keep_s``) and ``total`` (bucket 0, never expires; it
feeds Prometheus histograms). Bucket start = Unix second floored to the resolution. Expiry uses
EXPIREAT on the bucket's end + keep, so rewriting a bucket never extends it.

Counters (requests, tokens, errors by code, ...) live in one hash per model,
``Keys.counters(model)``, field ``<counter>|<label>`` (the label is empty for unlabelled
counters; the model is in the key). Models with series or counters are members of
``Keys.ts_models()``.

Every key of one model carries the model's hash tag, so one model's writes sit in one Redis
Cluster slot: they can go in one MULTI/EXEC (:meth:`Fold.write` with ``model``), and a pipeline
of several models' writes is split per node by the cluster client. ``Keys.ts_models()`` is the
one key outside: :meth:`Fold.register` adds to it (idempotent), never inside a transaction.

Writers fold a batch in memory (:class:`Fold`) and write it with one pipeline: a few commands
per touched bucket, never one per sample (measured 149k samples/s against 41k for a Lua script
per sample; notes/redis-faststream.md §3.2).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

from fakeai.config import Settings
from fakeai.streams import Keys
from fakeai.timeseries.sketch import LogSketch

__all__ = [
    "COARSE",
    "FINE",
    "TOTAL",
    "Fold",
    "counter_field",
    "parse_counter_field",
    "sketch_from_hash",
]

FINE = "fine"
COARSE = "coarse"
TOTAL = "total"

_ZERO_FIELD = "z"


def counter_field(counter: str, label: str = "") -> str:
    """The ``Keys.counters(model)`` field of one counter (label last: it may hold ``|``)."""
    return f"{counter}|{label}"


def parse_counter_field(raw: str | bytes) -> tuple[str, str] | None:
    """``(counter, label)`` from a counters field, None when malformed."""
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    counter, sep, label = text.partition("|")
    if not sep or not counter:
        return None
    return counter, label


def _bin_field(i: int | None) -> str:
    return _ZERO_FIELD if i is None else f"b{i}"


def sketch_from_hash(raw: dict[Any, Any], mm: list[Any] | None = None) -> LogSketch:
    """A sketch from one bucket's HGETALL reply (and its ZMSCORE min/max reply).

    Tolerates foreign or garbled fields (skips them): a scrape must never fail on odd data.
    """
    s = LogSketch()
    for f, v in raw.items():
        name = f.decode() if isinstance(f, bytes) else str(f)
        try:
            if name == "n":
                s.n += int(v)
            elif name == "sum":
                s.total += float(v)
            elif name == _ZERO_FIELD:
                s.bins[None] = s.bins.get(None, 0) + int(v)
            elif name.startswith("b"):
                i = int(name[1:])
                s.bins[i] = s.bins.get(i, 0) + int(v)
        except ValueError:
            continue
    if mm is not None and len(mm) == 2:
        lo, hi = mm
        if lo is not None and math.isfinite(float(lo)):
            s.min = float(lo)
        if hi is not None and math.isfinite(float(hi)):
            s.max = float(hi)
    return s


class Fold:
    """Samples and counter increments gathered in memory, written to Redis in one pipeline.

    Samples are grouped per (metric, model, fine bucket); coarse and total buckets are merged
    from those at write time. Counters are grouped per model (``counters[model][field]``).
    Not thread-safe: use it from one event loop.
    """

    __slots__ = ("_fine_s", "counters", "samples")

    def __init__(self, fine_s: int = 1) -> None:
        self._fine_s = fine_s
        self.samples: dict[tuple[str, str, int], LogSketch] = {}
        self.counters: dict[str, dict[str, int]] = {}

    def __bool__(self) -> bool:
        return bool(self.samples or self.counters)

    @property
    def models(self) -> list[str]:
        """Every model with samples or counters in this fold, sorted."""
        return sorted({m for _, m, _ in self.samples} | set(self.counters))

    def _sketch(self, metric: str, model: str, at: float) -> LogSketch:
        b = int(at // self._fine_s) * self._fine_s
        key = (metric, model, b)
        s = self.samples.get(key)
        if s is None:
            s = self.samples[key] = LogSketch()
        return s

    def add(self, metric: str, model: str, value: float, at: float) -> None:
        """One sample of ``metric`` for ``model`` at Unix time ``at`` (NaN/inf are ignored)."""
        if math.isfinite(value):
            self._sketch(metric, model, at).add(value)

    def add_sketch(self, metric: str, model: str, sketch: LogSketch, at: float) -> None:
        """Many samples at once (for example one stream's inter-token gaps)."""
        if sketch.n:
            self._sketch(metric, model, at).merge(sketch)

    def incr(self, counter: str, model: str, n: int = 1, label: str = "") -> None:
        fields = self.counters.setdefault(model, {})
        f = counter_field(counter, label)
        fields[f] = fields.get(f, 0) + n

    def merge(self, other: Fold) -> None:
        for (metric, model, b), s in other.samples.items():
            self._sketch(metric, model, b).merge(s)
        for model, fields in other.counters.items():
            mine = self.counters.setdefault(model, {})
            for f, n in fields.items():
                mine[f] = mine.get(f, 0) + n

    def select(self, models: Collection[str]) -> Fold:
        """A fold of this one's data for ``models`` only (shares the sketches: do not modify
        this fold afterwards)."""
        out = Fold(self._fine_s)
        out.samples = {k: s for k, s in self.samples.items() if k[1] in models}
        out.counters = {m: dict(f) for m, f in self.counters.items() if m in models}
        return out

    def register(self, pipe: Any, keys: Keys) -> None:
        """Queue ``SADD Keys.ts_models() <models>`` (idempotent; a key of its own slot, so never
        inside a model's MULTI/EXEC)."""
        models = self.models
        if models:
            pipe.sadd(keys.ts_models(), *models)

    def write(self, pipe: Any, keys: Keys, settings: Settings, model: str | None = None) -> None:
        """Queue the writes of ``model`` (every model when None) on ``pipe``; no I/O here.

        One model's writes name keys of its hash tag only (one cluster slot), so they may go
        in one MULTI/EXEC. :meth:`register` is separate.
        """
        coarse_s = settings.ts_coarse_s
        coarse: dict[tuple[str, str, int], LogSketch] = {}
        total: dict[tuple[str, str], LogSketch] = {}
        for (metric, m, b), s in self.samples.items():
            if model is not None and m != model:
                continue
            _write_bucket(
                pipe, keys, metric, m, FINE, b, s, b + self._fine_s + settings.ts_fine_keep_s
            )
            cb = b // coarse_s * coarse_s
            coarse.setdefault((metric, m, cb), LogSketch()).merge(s)
            total.setdefault((metric, m), LogSketch()).merge(s)
        for (metric, m, cb), s in coarse.items():
            _write_bucket(
                pipe, keys, metric, m, COARSE, cb, s, cb + coarse_s + settings.ts_coarse_keep_s
            )
        for (metric, m), s in total.items():
            _write_bucket(pipe, keys, metric, m, TOTAL, 0, s, None)
        for m, fields in self.counters.items():
            if model is not None and m != model:
                continue
            key = keys.counters(m)
            for f, n in fields.items():
                pipe.hincrby(key, f, n)


def _write_bucket(
    pipe: Any,
    keys: Keys,
    metric: str,
    model: str,
    resolution: str,
    bucket: int,
    s: LogSketch,
    expire_at: int | None,
) -> None:
    k = keys.ts_bucket(metric, model, resolution, bucket)
    pipe.hincrby(k, "n", s.n)
    pipe.hincrbyfloat(k, "sum", s.total)
    for i, c in s.bins.items():
        pipe.hincrby(k, _bin_field(i), c)
    if expire_at is not None:
        # Only expiring buckets keep min/max: the all-time series feeds Prometheus, which
        # needs counts and sums only.
        mm = keys.ts_minmax(metric, model, resolution, bucket)
        pipe.zadd(mm, {"min": s.min}, lt=True)
        pipe.zadd(mm, {"max": s.max}, gt=True)
        pipe.expireat(k, expire_at)
        pipe.expireat(mm, expire_at)
