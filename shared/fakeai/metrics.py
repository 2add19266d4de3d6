"""Request, token, error and stream counters per endpoint, with sliding-window rates.

:class:`MetricsTracker` implements :class:`fakeai.hooks.MetricsHook`. Totals are cumulative
(for Prometheus counters); rates and latency percentiles cover a sliding window (default 60 s).
Memory is bounded: events are summed into one-second buckets (at most ``window_s`` of them per
series) and latency samples sit in ``deque(maxlen=max_samples)``.

:meth:`MetricsTracker.get_metrics` always returns every key for every endpoint, with zeros
where nothing happened yet: upstream FakeAI 0.3's ``/metrics`` raised ``KeyError: 'rate'``
once traffic existed, and tools scrape it every 100 ms.

All methods take one ``threading.Lock`` for a few microseconds, so the tracker is safe from
several threads and from the event loop alike.

Compatibility surface: ``MetricsTracker`` as the framework document and FakeAI 0.3's stream
manager use it (constructor, ``track_*``, the stream calls, ``get_metrics`` with
``streaming_stats``); see ``docs/library.md``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MetricsTracker", "summarize"]

Clock = Callable[[], float]
_SERIES = ("requests", "responses", "tokens", "errors")
_EMPTY_STATS = {"count": 0, "avg": 0.0, "min": 0.0, "max": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0}


def _percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) on sorted data."""
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(values: Iterable[float]) -> dict[str, float]:
    """count, avg, min, max, p50, p90, p99 of ``values``; zeros when there are none."""
    ordered = sorted(values)
    if not ordered:
        return dict(_EMPTY_STATS)
    return {
        "count": len(ordered),
        "avg": math.fsum(ordered) / len(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "p50": _percentile(ordered, 0.50),
        "p90": _percentile(ordered, 0.90),
        "p99": _percentile(ordered, 0.99),
    }


class _Rate:
    """Events summed into one-second buckets; the rate is the sum over the window / window."""

    __slots__ = ("_buckets", "_window", "total")

    def __init__(self, window_s: float) -> None:
        self._window = window_s
        self._buckets: deque[list[float]] = deque()  # [bucket second, sum]
        self.total = 0.0

    def add(self, now: float, value: float) -> None:
        self.total += value
        second = math.floor(now)
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += value
        else:
            self._buckets.append([second, value])
            self._trim(now)

    def _trim(self, now: float) -> None:
        cutoff = now - self._window
        while self._buckets and self._buckets[0][0] + 1 <= cutoff:
            self._buckets.popleft()

    def rate(self, now: float, age: float) -> float:
        """Events per second over the window (or over ``age`` while younger than the window)."""
        self._trim(now)
        span = max(1.0, min(self._window, age))
        return sum(b[1] for b in self._buckets) / span


class _Samples:
    """Recent (time, value) samples; stats cover those inside the window."""

    __slots__ = ("_items", "_window")

    def __init__(self, window_s: float, max_samples: int) -> None:
        self._window = window_s
        self._items: deque[tuple[float, float]] = deque(maxlen=max_samples)

    def add(self, now: float, value: float) -> None:
        self._items.append((now, value))

    def values(self, now: float) -> list[float]:
        cutoff = now - self._window
        while self._items and self._items[0][0] < cutoff:
            self._items.popleft()
        return [v for _, v in self._items]

    def stats(self, now: float) -> dict[str, float]:
        return summarize(self.values(now))


@dataclass(slots=True)
class _Endpoint:
    window_s: float
    max_samples: int
    rates: dict[str, _Rate] = field(init=False)
    latency: _Samples = field(init=False)
    ttft: _Samples = field(init=False)
    duration: _Samples = field(init=False)
    tokens_per_s: _Samples = field(init=False)
    streams_started: int = 0
    streams_completed: int = 0
    streams_failed: int = 0

    def __post_init__(self) -> None:
        self.rates = {name: _Rate(self.window_s) for name in _SERIES}
        self.latency = _Samples(self.window_s, self.max_samples)
        self.ttft = _Samples(self.window_s, self.max_samples)
        self.duration = _Samples(self.window_s, self.max_samples)
        self.tokens_per_s = _Samples(self.window_s, self.max_samples)


@dataclass(slots=True)
class _Stream:
    endpoint: str
    start: float
    first_token: float | None = None
    tokens: int = 0


class MetricsTracker:
    """Per-endpoint counters, rates and latency percentiles (see the module docstring).

    Args:
        window_s: sliding window for rates and percentiles, seconds.
        max_samples: latency samples kept per series (memory bound).
        max_active_streams: streams tracked at once; past it the oldest is dropped (a stream
            that never completes must not leak).
        clock: monotonic seconds; injectable for tests.
    """

    def __init__(
        self,
        window_s: float = 60.0,
        max_samples: int = 10_000,
        max_active_streams: int = 100_000,
        clock: Clock = time.monotonic,
    ) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        if max_samples < 1 or max_active_streams < 1:
            raise ValueError("max_samples and max_active_streams must be >= 1")
        self._window = window_s
        self._max_samples = max_samples
        self._max_active = max_active_streams
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._endpoints: dict[str, _Endpoint] = {}
        self._streams: dict[str, _Stream] = {}

    def _ep(self, endpoint: str) -> _Endpoint:
        ep = self._endpoints.get(endpoint)
        if ep is None:
            ep = self._endpoints[endpoint] = _Endpoint(self._window, self._max_samples)
        return ep

    # -- MetricsHook ---------------------------------------------------------------------------

    def track_request(self, endpoint: str) -> None:
        with self._lock:
            self._ep(endpoint).rates["requests"].add(self._clock(), 1)

    def track_response(self, endpoint: str, latency_s: float | None = None) -> None:
        """A response was sent; ``latency_s`` (request to last byte) feeds the percentiles."""
        with self._lock:
            now = self._clock()
            ep = self._ep(endpoint)
            ep.rates["responses"].add(now, 1)
            if latency_s is not None:
                ep.latency.add(now, latency_s)

    def track_tokens(self, endpoint: str, count: int) -> None:
        with self._lock:
            self._ep(endpoint).rates["tokens"].add(self._clock(), count)

    def track_error(self, endpoint: str) -> None:
        with self._lock:
            self._ep(endpoint).rates["errors"].add(self._clock(), 1)

    def start_stream(self, stream_id: str, endpoint: str) -> None:
        with self._lock:
            if len(self._streams) >= self._max_active and stream_id not in self._streams:
                del self._streams[next(iter(self._streams))]
            self._streams[stream_id] = _Stream(endpoint, self._clock())
            self._ep(endpoint).streams_started += 1

    def track_stream_first_token(self, stream_id: str) -> None:
        with self._lock:
            s = self._streams.get(stream_id)
            if s is not None and s.first_token is None:
                now = self._clock()
                s.first_token = now
                self._ep(s.endpoint).ttft.add(now, now - s.start)

    def track_stream_token(self, stream_id: str, count: int = 1) -> None:
        with self._lock:
            s = self._streams.get(stream_id)
            if s is not None:
                s.tokens += count

    def complete_stream(self, stream_id: str, endpoint: str) -> None:
        """The stream ended normally. Its duration goes to the stream stats, not to the
        response latency: callers report that with :meth:`track_response` (one sample each)."""
        with self._lock:
            s = self._streams.pop(stream_id, None)
            ep = self._ep(endpoint)
            ep.streams_completed += 1
            if s is None:
                return
            now = self._clock()
            duration = now - s.start
            ep.duration.add(now, duration)
            if s.tokens and duration > 0:
                ep.tokens_per_s.add(now, s.tokens / duration)

    def fail_stream(self, stream_id: str, endpoint: str, error_message: str = "") -> None:
        with self._lock:
            self._streams.pop(stream_id, None)
            ep = self._ep(endpoint)
            ep.streams_failed += 1
            ep.rates["errors"].add(self._clock(), 1)

    # -- reading ---------------------------------------------------------------------------

    def get_active_streams(self) -> int:
        with self._lock:
            return len(self._streams)

    def get_streaming_stats(self) -> dict[str, Any]:
        """Streams over all endpoints: active/completed/failed, TTFT and tokens/s (seconds)."""
        with self._lock:
            now = self._clock()
            eps = list(self._endpoints.values())
            return {
                "active_streams": len(self._streams),
                "started_streams": sum(e.streams_started for e in eps),
                "completed_streams": sum(e.streams_completed for e in eps),
                "failed_streams": sum(e.streams_failed for e in eps),
                "ttft": summarize(v for e in eps for v in e.ttft.values(now)),
                "tokens_per_second": summarize(v for e in eps for v in e.tokens_per_s.values(now)),
            }

    def get_metrics(self) -> dict[str, Any]:
        """A JSON-able snapshot; every endpoint has every key (zeros when idle). Never raises.

        ``{"requests"|"responses"|"tokens"|"errors": {endpoint: {"rate", "total", "count",
        "avg", "min", "max", "p50", "p90", "p99"}}, "streams": {endpoint: {...}},
        "streaming_stats": {...}, "window_s", "uptime_s"}``; latencies in seconds, percentiles
        over the window (for ``responses``: request latency; elsewhere zeros).
        """
        with self._lock:
            now = self._clock()
            age = now - self._started
            result: dict[str, Any] = {name: {} for name in _SERIES}
            streams: dict[str, Any] = {}
            for name, ep in self._endpoints.items():
                latency = ep.latency.stats(now)
                for series in _SERIES:
                    rate = ep.rates[series]
                    stats = latency if series == "responses" else dict(_EMPTY_STATS)
                    result[series][name] = {
                        "rate": rate.rate(now, age),
                        "total": rate.total,
                        **stats,
                    }
                streams[name] = {
                    "started": ep.streams_started,
                    "completed": ep.streams_completed,
                    "failed": ep.streams_failed,
                    "active": sum(1 for s in self._streams.values() if s.endpoint == name),
                    "ttft": ep.ttft.stats(now),
                    "duration": ep.duration.stats(now),
                    "tokens_per_second": ep.tokens_per_s.stats(now),
                }
        result["streams"] = streams
        result["streaming_stats"] = self.get_streaming_stats()
        result["window_s"] = self._window
        result["uptime_s"] = age
        return result

    def get_prometheus_metrics(self) -> str:
        """The snapshot in Prometheus text format (counters are totals; rates are gauges)."""
        m = self.get_metrics()
        lines: list[str] = []
        for series in _SERIES:
            name = f"fakeai_{series}"
            lines += [f"# TYPE {name}_total counter", f"# TYPE {name}_per_second gauge"]
            for endpoint, stats in m[series].items():
                label = f'{{endpoint="{_escape(endpoint)}"}}'
                lines.append(f"{name}_total{label} {stats['total']:g}")
                lines.append(f"{name}_per_second{label} {stats['rate']:.6f}")
        lines.append("# TYPE fakeai_latency_seconds summary")
        for endpoint, stats in m["responses"].items():
            for q in ("p50", "p90", "p99"):
                quantile = f"0.{q[1:]}"
                label = f'{{endpoint="{_escape(endpoint)}",quantile="{quantile}"}}'
                lines.append(f"fakeai_latency_seconds{label} {stats[q]:.6f}")
        s = m["streaming_stats"]
        lines += [
            "# TYPE fakeai_active_streams gauge",
            f"fakeai_active_streams {s['active_streams']}",
        ]
        for key in ("completed", "failed"):
            lines += [
                f"# TYPE fakeai_{key}_streams_total counter",
                f"fakeai_{key}_streams_total {s[f'{key}_streams']}",
            ]
        return "\n".join(lines) + "\n"

    def reset(self) -> None:
        """Forget everything (tests, or a metrics reset endpoint)."""
        with self._lock:
            self._endpoints.clear()
            self._streams.clear()
            self._started = self._clock()


def _escape(value: str) -> str:
    # Prometheus label values escape backslash, double quote and newline (exposition format).
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
