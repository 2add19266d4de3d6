"""Prometheus text for ``GET /metrics``, rendered from the all-time series in Redis.

Histograms come from the log bins of the ``total`` buckets: the count at bound ``le`` is the
count of bins whose upper value is ≤ ``le`` (a bin straddling a bound counts one bound up), so
``_count`` and ``_sum`` are exact and the buckets are within one bin width (≈4 %). Bounds are
vLLM's (vllm/v1/metrics/loggers.py), so dashboards built for vLLM read ours unchanged; vLLM's
names carry the labels ``model_name`` and ``engine`` (:data:`ENGINE`), ours ``model``.
``vllm:request_success_total`` carries every vLLM ``finished_reason`` of every model, 0 until
seen, ours mapped onto them (:data:`_TO_VLLM_REASON`). vLLM's per-request histograms (prompt
and generation tokens, ``n``, ``max_tokens``, queue, prefill, decode and inference time) are
exact: counts kept per bound in the counters hash (:mod:`fakeai.timeseries.histograms`).
OpenMetrics is rendered when the scrape's ``Accept`` asks for it (:func:`wants_openmetrics`;
prometheus_client's encoder).

The gauges are per model, from the active streams (``Keys.active()``) and the ``model`` and
``status`` of each one's meta hash: ``queued`` is waiting (accepted, not yet taken up by a
producer), ``running`` is running. Every model known to the series shows them, 0 when idle.

Scrapers such as AIPerf poll every 100 ms (notes/llm-sim-anchors.md §0.9), so a render is cached
for ``cache_s`` and costs two pipelines in the steady state: first the model set, the active
stream ids, and each model of the previous render's set (its counters hash and its all-time
buckets; one model's keys share a hash tag, so on a Redis Cluster the client splits the
pipeline per node); then the meta fields of the active streams and any new model's keys. Odd
data (garbled fields, foreign keys) is skipped, never an error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.openmetrics.exposition import ALLOWUTF8
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.registry import Collector

from fakeai.streams import Keys
from fakeai.streams.client import RedisClient
from fakeai.streams.meta import F
from fakeai.timeseries import names as n
from fakeai.timeseries.histograms import E2E_BUCKETS, EXACT_HISTOGRAMS
from fakeai.timeseries.sketch import LogSketch
from fakeai.timeseries.store import TOTAL, parse_counter_field, sketch_from_hash

__all__ = [
    "CONTENT_TYPE",
    "E2E_BUCKETS",
    "ENGINE",
    "ITL_BUCKETS",
    "OPENMETRICS_TYPE",
    "TTFT_BUCKETS",
    "VLLM_FINISHED_REASONS",
    "PrometheusRenderer",
    "render_snapshot",
    "wants_openmetrics",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
               7.5, 10.0, 20.0, 40.0, 80.0)  # fmt: skip

# (family name, label, metric, bounds, help)
_HISTOGRAMS: tuple[tuple[str, str, str, tuple[float, ...], str], ...] = (
    ("fakeai_time_to_first_token_seconds", "model", n.TTFT, TTFT_BUCKETS,
     "Time from request accepted to first chunk emitted by the producer."),
    ("fakeai_inter_token_latency_seconds", "model", n.ITL, ITL_BUCKETS,
     "Gap between consecutive chunks of a stream, as emitted by the producer."),
    ("fakeai_e2e_request_latency_seconds", "model", n.E2E, E2E_BUCKETS,
     "Time from request accepted to the terminal entry."),
    ("fakeai_edge_time_to_first_token_seconds", "model", n.EDGE_TTFT, TTFT_BUCKETS,
     "Time from request received by the edge to the first token byte written."),
    ("fakeai_pipeline_lag_seconds", "model", n.PIPELINE_LAG, TTFT_BUCKETS,
     "Time from producer append to the edge's socket write."),
    ("vllm:time_to_first_token_seconds", "model_name", n.TTFT, TTFT_BUCKETS,
     "Histogram of time to first token in seconds."),
    ("vllm:inter_token_latency_seconds", "model_name", n.ITL, ITL_BUCKETS,
     "Histogram of inter-token latency in seconds."),
    ("vllm:request_time_per_output_token_seconds", "model_name", n.TPOT, ITL_BUCKETS,
     "Histogram of time per output token in seconds."),
    ("vllm:e2e_request_latency_seconds", "model_name", n.E2E, E2E_BUCKETS,
     "Histogram of end-to-end request latency in seconds."),
)  # fmt: skip
_SERIES = tuple(dict.fromkeys(h[2] for h in _HISTOGRAMS))

# (family name without _total, label, counter, extra label name or None, help)
_COUNTERS: tuple[tuple[str, str, str, str | None, str], ...] = (
    ("fakeai_requests", "model", n.REQUESTS, None, "Finished requests."),
    ("fakeai_output_tokens", "model", n.OUTPUT_TOKENS, None, "Completion tokens generated."),
    ("fakeai_cancels", "model", n.CANCELS, None, "Streams cancelled."),
    ("fakeai_errors", "model", n.ERRORS, "code", "Streams ended by an error, by code."),
    ("fakeai_client_disconnects", "model", n.CLIENT_DISCONNECTS, None,
     "Client connections that ended before their stream (not cancels)."),
    ("fakeai_invalid_events", "model", n.INVALID_EVENTS, None,
     "Firehose entries the metrics consumer could not decode."),
    ("vllm:prompt_tokens", "model_name", n.PROMPT_TOKENS, None, "Prefill tokens processed."),
    ("vllm:generation_tokens", "model_name", n.OUTPUT_TOKENS, None,
     "Generation tokens processed."),
    ("vllm:request_success", "model_name", n.SUCCESS, "finished_reason",
     "Successfully processed requests."),
)  # fmt: skip

ENGINE = "0"
"""The ``engine`` label of every ``vllm:`` family: vLLM v1 labels each engine core's metrics
with its index, and a single engine is ``"0"``."""

VLLM_FINISHED_REASONS = ("stop", "length", "abort", "error")
"""vLLM's ``finished_reason`` values (``FINISH_REASON_STRINGS``, vllm/v1/engine/__init__.py);
each is exposed for every model, 0 until one happens, so rate() queries see the series."""
_TO_VLLM_REASON = {"length": "length", "abort": "abort"}
"""Our finish reasons onto vLLM's: ``length`` and ``abort`` (a cancel) as they are; every other
``finish_reason`` of a finished stream (stop, tool_calls, content_filter) is vLLM's ``stop``;
streams ended by an error other than a cancel are ``error``."""


@dataclass(slots=True)
class _Snapshot:
    totals: dict[tuple[str, str], LogSketch] = field(default_factory=dict)
    counters: dict[tuple[str, str, str], int] = field(default_factory=dict)
    running: dict[str, int] = field(default_factory=dict)
    """Running streams per model (every model of the gauges, 0 included)."""
    waiting: dict[str, int] = field(default_factory=dict)


class _SnapshotCollector(Collector):
    def __init__(self, snap: _Snapshot) -> None:
        self._snap = snap

    def collect(self) -> Iterator[Metric]:
        snap = self._snap
        for name, label, metric, bounds, doc in _HISTOGRAMS:
            h = HistogramMetricFamily(name, doc, labels=[label, *_engine(name)])
            for (m, model), s in sorted(snap.totals.items()):
                if m != metric or not s.n:
                    continue
                # Clamp: garbled bins must not yield a bucket above +Inf.
                counts = [min(c, s.n) for c in s.cumulative_le(bounds)]
                buckets = [(_fmt(le), float(c)) for le, c in zip(bounds, counts, strict=True)]
                buckets.append(("+Inf", float(s.n)))
                h.add_metric([model, *_engine_value(name)], buckets, s.total)
            yield h
        yield from _exact(snap)
        for name, label, counter, extra, doc in _COUNTERS:
            if counter == n.SUCCESS:
                yield _finished(name, doc, snap)
                continue
            labels = ([label] if extra is None else [label, extra]) + _engine(name)
            c = CounterMetricFamily(name, doc, labels=labels)
            for (cname, lab, model), v in sorted(snap.counters.items()):
                if cname == counter:
                    values = [model] if extra is None else [model, lab]
                    c.add_metric(values + _engine_value(name), float(v))
            yield c
        for name, label, value, doc in (
            ("fakeai_running_streams", "model", snap.running, "Streams being generated."),
            ("vllm:num_requests_running", "model_name", snap.running, "Requests running."),
            ("vllm:num_requests_waiting", "model_name", snap.waiting, "Requests waiting."),
        ):
            g = GaugeMetricFamily(name, doc, labels=[label, *_engine(name)])
            for model, count in sorted(value.items()):
                g.add_metric([model, *_engine_value(name)], float(count))
            yield g


def _exact(snap: _Snapshot) -> Iterator[Metric]:
    """The exact per-request histograms, per model that has observations."""
    fields: dict[str, dict[str, dict[str, int]]] = {}  # metric -> model -> label -> count
    for (cname, label, model), v in snap.counters.items():
        fields.setdefault(cname, {}).setdefault(model, {})[label] = v
    for h in EXACT_HISTOGRAMS:
        fam = HistogramMetricFamily(h.family, h.doc, labels=["model_name", "engine"])
        for model, counts in sorted(fields.get(h.metric, {}).items()):
            cumulative, count, total = h.read(counts)
            if not count:
                continue
            buckets = [(_fmt(le), float(c)) for le, c in zip(h.bounds, cumulative, strict=True)]
            buckets.append(("+Inf", float(count)))
            fam.add_metric([model, ENGINE], buckets, total)
        yield fam


def _engine(name: str) -> list[str]:
    return ["engine"] if name.startswith("vllm:") else []


def _engine_value(name: str) -> list[str]:
    return [ENGINE] if name.startswith("vllm:") else []


def _finished(name: str, doc: str, snap: _Snapshot) -> CounterMetricFamily:
    """``vllm:request_success`` by vLLM's ``finished_reason``, every reason of every model
    present (0 until seen); ours mapped by :data:`_TO_VLLM_REASON`."""
    totals: dict[tuple[str, str], int] = {}
    models = {model for (_, _, model) in snap.counters} | {model for (_, model) in snap.totals}
    for model in models:
        for reason in VLLM_FINISHED_REASONS:
            totals[(model, reason)] = 0
    for (cname, lab, model), v in snap.counters.items():
        if cname == n.SUCCESS:
            reason = _TO_VLLM_REASON.get(lab, "stop")
        elif cname == n.ERRORS and lab != "cancelled":  # a cancel is already "abort"
            reason = "error"
        else:
            continue
        totals[(model, reason)] = totals.get((model, reason), 0) + v
    c = CounterMetricFamily(name, doc, labels=["model_name", "finished_reason", "engine"])
    for (model, reason), v in sorted(totals.items()):
        c.add_metric([model, reason, ENGINE], float(v))
    return c


def _fmt(le: float) -> str:
    return repr(float(le))


def render_snapshot(snap: _Snapshot, *, openmetrics: bool = False) -> bytes:
    """Prometheus text exposition (or OpenMetrics) of a snapshot (a fresh registry each time)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snap))
    if openmetrics:
        # ALLOWUTF8: the default escaping ("underscores") writes the samples of a name with a
        # colon as vllm_..., under a "# TYPE vllm:..." line (prometheus_client 0.26 escapes
        # sample names with the label-name character set). Every name here is a valid legacy
        # name, so nothing is quoted either way.
        text: bytes = openmetrics_latest(registry, escaping=ALLOWUTF8)  # type: ignore[no-untyped-call]
        return text
    return generate_latest(registry)


def wants_openmetrics(accept: str | None) -> bool:
    """Does an ``Accept`` header ask for OpenMetrics (as Prometheus does when it may)?"""
    return accept is not None and "application/openmetrics-text" in accept


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


class PrometheusRenderer:
    """Reads the all-time series and the active streams and renders them, caching the text for
    ``cache_s``."""

    def __init__(self, redis: RedisClient, keys: Keys, *, cache_s: float = 0.1) -> None:
        self._redis = redis
        self._keys = keys
        self._cache_s = cache_s
        self._models: list[str] = []
        self._cached: dict[bool, tuple[float, bytes]] = {}
        self._lock = asyncio.Lock()

    async def render(self, *, openmetrics: bool = False) -> bytes:
        """The exposition text (or OpenMetrics); concurrent scrapes share one Redis read."""
        async with self._lock:
            now = time.monotonic()
            cached = self._cached.get(openmetrics)
            if cached is not None and now - cached[0] < self._cache_s:
                return cached[1]
            text = render_snapshot(await self._snapshot(), openmetrics=openmetrics)
            self._cached[openmetrics] = (time.monotonic(), text)
            return text

    async def _snapshot(self) -> _Snapshot:
        k = self._keys
        pipe = self._redis.pipeline(transaction=False)
        pipe.smembers(k.ts_models())
        pipe.zrange(k.active(), 0, -1)
        self._queue_models(pipe, self._models)
        replies = await pipe.execute(raise_on_error=False)
        models = sorted(_name(m) for m in _items(replies[0]))
        active = [_name(sid) for sid in _items(replies[1])]
        snap = _Snapshot()
        self._read_models(snap, self._models, replies[2:])
        new = [m for m in models if m not in self._models]
        pipe = self._redis.pipeline(transaction=False)
        for sid in active:
            pipe.hmget(k.meta(sid), [F.MODEL, F.STATUS])
        self._queue_models(pipe, new)
        replies = await pipe.execute(raise_on_error=False) if active or new else []
        self._read_models(snap, new, replies[len(active) :])
        self._models = models
        snap.running = dict.fromkeys(models, 0)
        snap.waiting = dict.fromkeys(models, 0)
        for meta in replies[: len(active)]:
            if not isinstance(meta, list) or len(meta) != 2 or meta[0] is None:
                continue  # gone meanwhile, or odd
            model, status = _name(meta[0]), _name(meta[1])
            for gauge, wanted in ((snap.running, "running"), (snap.waiting, "queued")):
                gauge.setdefault(model, 0)
                if status == wanted:
                    gauge[model] += 1
        return snap

    def _queue_models(self, pipe: Any, models: list[str]) -> None:
        for m in models:
            pipe.hgetall(self._keys.counters(m))
            for metric in _SERIES:
                pipe.hgetall(self._keys.ts_bucket(metric, m, TOTAL, 0))

    @staticmethod
    def _read_models(snap: _Snapshot, models: list[str], replies: list[Any]) -> None:
        i = 0
        for m in models:
            counters = replies[i]
            i += 1
            if isinstance(counters, dict):
                for f, v in counters.items():
                    parsed = parse_counter_field(f)
                    if parsed is not None:
                        key = (parsed[0], parsed[1], m)
                        snap.counters[key] = snap.counters.get(key, 0) + _int(v)
            for metric in _SERIES:
                raw = replies[i]
                i += 1
                if isinstance(raw, dict):
                    s = sketch_from_hash(raw)
                    if s.n > 0:
                        snap.totals[(metric, m)] = s


def _name(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def _items(reply: Any) -> list[Any] | set[Any]:
    """A set or list reply, or nothing when the command failed (a key of another type)."""
    return reply if isinstance(reply, set | list) else []
