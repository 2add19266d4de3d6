"""Per-stream token timing and stream quality: TTFT, ITL, jitter, smoothness, throughput.

:class:`StreamingMetricsTracker` implements :class:`fakeai.hooks.StreamingMetricsHook`.
``record_token`` is on the hot path (once per chunk), so it only appends a timestamp under a
lock; everything derived (ITL list, jitter, percentiles) is computed when a stream ends or when
someone asks. Memory is bounded: at most ``max_active_streams`` live streams (oldest dropped),
the last ``max_completed_streams`` finished ones, and ``max_itl_samples`` recent ITLs for the
aggregate percentiles.

Quality figures:
- jitter = standard deviation of the stream's ITLs (ms);
- smoothness = 100 / (1 + cv), cv = jitter / mean ITL: 100 for a metronome, 50 when the
  spread equals the mean;
- tokens/s = (tokens - 1) / (last token - first token): the decode rate, TTFT excluded;
- a stall is a gap over 500 ms; a slow reader is a stream that hit backpressure.

Compatibility surface: the methods of FakeAI 0.3's ``StreamingMetricsTracker`` with its
keywords (``timestamp_ns=``, ``client_id=``, ``get_all_clients()``, ``clear_history()``,
``reset()``, the stream counts); the statistics are dicts, not upstream's ``StreamLifecycle``
objects (``docs/library.md``).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from fakeai.metrics import summarize

__all__ = ["StreamingMetricsTracker"]

Status = Literal["active", "completed", "failed", "cancelled"]
_STALL_S = 0.5


@dataclass(slots=True)
class _Stream:
    stream_id: str
    model: str
    prompt_tokens: int
    temperature: float | None
    max_tokens: int | None
    client_id: str | None
    start: float
    times: list[float] = field(default_factory=list)
    chars: int = 0
    chunk_sizes: list[int] = field(default_factory=list)
    backpressure_events: int = 0
    status: Status = "active"
    finish_reason: str | None = None
    error_message: str | None = None
    end: float | None = None
    summary: dict[str, Any] | None = None
    """Filled once when the stream ends; finished streams answer from it."""

    def itls_ms(self) -> list[float]:
        t = self.times
        return [(t[i] - t[i - 1]) * 1000.0 for i in range(1, len(t))]


@dataclass(slots=True)
class _Client:
    streams: int = 0
    tokens: int = 0
    duration_s: float = 0.0
    slow_streams: int = 0
    cancellations: int = 0
    timeouts: int = 0
    reconnections: int = 0


def _describe(s: _Stream, now: float) -> dict[str, Any]:
    itls = s.itls_ms()
    n = len(s.times)
    mean_itl = statistics.fmean(itls) if itls else None
    jitter = statistics.pstdev(itls) if len(itls) >= 2 else None
    smoothness = None
    if mean_itl is not None and jitter is not None:
        smoothness = 100.0 if mean_itl == 0 else 100.0 / (1.0 + jitter / mean_itl)
    decode_s = s.times[-1] - s.times[0] if n >= 2 else 0.0
    end = s.end if s.end is not None else now
    sizes = s.chunk_sizes
    return {
        "stream_id": s.stream_id,
        "status": s.status,
        "model": s.model,
        "prompt_tokens": s.prompt_tokens,
        "temperature": s.temperature,
        "max_tokens": s.max_tokens,
        "client_id": s.client_id,
        "token_count": n,
        "characters": s.chars,
        "ttft_ms": (s.times[0] - s.start) * 1000.0 if n else None,
        "duration_ms": (end - s.start) * 1000.0,
        "tokens_per_second": (n - 1) / decode_s if decode_s > 0 else None,
        "itl_ms": summarize(itls),
        "jitter_ms": jitter,
        "smoothness_score": smoothness,
        "stall_events": sum(1 for x in itls if x > _STALL_S * 1000.0),
        "chunks_sent": len(sizes),
        "total_bytes_sent": sum(sizes),
        "chunk_size_bytes": summarize(float(x) for x in sizes),
        "backpressure_events": s.backpressure_events,
        "finish_reason": s.finish_reason,
        "error_message": s.error_message,
    }


class StreamingMetricsTracker:
    """Detailed per-stream metrics (see the module docstring). Thread-safe.

    Args:
        max_active_streams: live streams tracked at once (oldest dropped past it).
        max_completed_streams: finished streams kept for :meth:`get_stream_stats`.
        max_itl_samples: recent ITLs kept for the aggregate ITL percentiles.
        slow_client_tps: a client reading below this many tokens/s counts as slow.
        clock: monotonic seconds; injectable for tests.
    """

    def __init__(
        self,
        max_active_streams: int = 10_000,
        max_completed_streams: int = 1_000,
        max_itl_samples: int = 100_000,
        slow_client_tps: float = 10.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if min(max_active_streams, max_completed_streams, max_itl_samples) < 1:
            raise ValueError(
                "max_active_streams, max_completed_streams and max_itl_samples must be >= 1"
            )
        self._max_active = max_active_streams
        self._max_done = max_completed_streams
        self._slow_tps = slow_client_tps
        self._clock = clock
        self._lock = threading.Lock()
        self._active: dict[str, _Stream] = {}
        self._done: dict[str, _Stream] = {}
        self._itls: deque[float] = deque(maxlen=max_itl_samples)
        self._clients: dict[str, _Client] = {}
        self._counts = {"started": 0, "completed": 0, "failed": 0, "cancelled": 0, "dropped": 0}

    # -- StreamingMetricsHook --------------------------------------------------------------

    def start_stream(
        self,
        stream_id: str,
        model: str,
        prompt_tokens: int = 0,
        temperature: float | None = None,
        max_tokens: int | None = None,
        client_id: str | None = None,
    ) -> None:
        with self._lock:
            if len(self._active) >= self._max_active and stream_id not in self._active:
                del self._active[next(iter(self._active))]
                self._counts["dropped"] += 1
            self._active[stream_id] = _Stream(
                stream_id, model, prompt_tokens, temperature, max_tokens, client_id, self._clock()
            )
            self._counts["started"] += 1
            if client_id is not None:
                self._client(client_id).streams += 1

    def record_token(
        self,
        stream_id: str,
        token: str,
        chunk_size_bytes: int | None = 0,
        *,
        timestamp: float | None = None,
        timestamp_ns: int | None = None,
    ) -> None:
        """One token (or chunk) went out; ``chunk_size_bytes`` > 0 also counts a sent chunk.

        ``timestamp`` is on the tracker's clock (seconds); ``timestamp_ns`` (upstream's) is
        ``time.time_ns()``, placed on the tracker's clock by how long ago it was."""
        if timestamp is not None:
            now = timestamp
        elif timestamp_ns is not None:
            now = self._clock() - (time.time_ns() - timestamp_ns) / 1e9
        else:
            now = self._clock()
        with self._lock:
            s = self._active.get(stream_id)
            if s is None:
                return
            s.times.append(now)
            s.chars += len(token)
            if chunk_size_bytes:
                s.chunk_sizes.append(chunk_size_bytes)

    def complete_stream(
        self,
        stream_id: str,
        finish_reason: str | None = None,
        client_cancelled: bool = False,
        client_id: str | None = None,
    ) -> None:
        """The stream ended: normally, or (``client_cancelled``) because the client left."""
        self._finish(stream_id, "cancelled" if client_cancelled else "completed", finish_reason)

    def fail_stream(self, stream_id: str, error_message: str) -> None:
        self._finish(stream_id, "failed", None, error_message)

    # -- more events (upstream names) --------------------------------------------------------

    def cancel_stream(
        self, stream_id: str, error_message: str | None = None, client_id: str | None = None
    ) -> None:
        """The stream was cancelled (``client_id`` is accepted; the stream's own is used)."""
        self._finish(stream_id, "cancelled", None, error_message)

    def record_chunk_sent(self, stream_id: str, chunk_size_bytes: int) -> None:
        with self._lock:
            s = self._active.get(stream_id)
            if s is not None:
                s.chunk_sizes.append(chunk_size_bytes)

    def record_backpressure(self, stream_id: str) -> None:
        """The client was not reading fast enough (the send buffer was full)."""
        with self._lock:
            s = self._active.get(stream_id)
            if s is not None:
                s.backpressure_events += 1

    def record_timeout(self, client_id: str) -> None:
        with self._lock:
            self._client(client_id).timeouts += 1

    def record_reconnection(self, client_id: str) -> None:
        with self._lock:
            self._client(client_id).reconnections += 1

    def _client(self, client_id: str) -> _Client:
        c = self._clients.get(client_id)
        if c is None:
            if len(self._clients) >= self._max_active:  # bounded: ids come from requests
                del self._clients[next(iter(self._clients))]
            c = self._clients[client_id] = _Client()
        return c

    def _finish(
        self, stream_id: str, status: Status, finish_reason: str | None, error: str | None = None
    ) -> None:
        now = self._clock()
        with self._lock:
            s = self._active.pop(stream_id, None)
            if s is None:
                return
            s.status, s.finish_reason, s.error_message, s.end = status, finish_reason, error, now
            self._counts[status] += 1
            summary = s.summary = _describe(s, now)
            self._itls.extend(s.itls_ms())
            s.times = []  # the summary holds what is needed; free the raw timestamps
            if len(self._done) >= self._max_done:
                del self._done[next(iter(self._done))]
            self._done[stream_id] = s
            if s.client_id is not None:
                c = self._client(s.client_id)
                c.tokens += summary["token_count"]
                c.duration_s += now - s.start
                tps = summary["tokens_per_second"]
                if (tps is not None and tps < self._slow_tps) or s.backpressure_events:
                    c.slow_streams += 1
                if status == "cancelled":
                    c.cancellations += 1

    # -- reading -----------------------------------------------------------------------------

    def get_stream_stats(self, stream_id: str) -> dict[str, Any] | None:
        """Everything about one live or recently finished stream; None when unknown."""
        with self._lock:
            s = self._active.get(stream_id)
            if s is not None:
                return _describe(s, self._clock())
            s = self._done.get(stream_id)
            return None if s is None or s.summary is None else dict(s.summary)

    def get_active_stream_count(self) -> int:
        with self._lock:
            return len(self._active)

    def get_completed_stream_count(self) -> int:
        """Streams that completed (ever, not only the retained ones)."""
        with self._lock:
            return self._counts["completed"]

    def get_failed_stream_count(self) -> int:
        """Streams that failed or were cancelled (upstream counts both as failed)."""
        with self._lock:
            return self._counts["failed"] + self._counts["cancelled"]

    def get_all_clients(self) -> list[str]:
        """Ids of the clients seen (bounded: the most recent ``max_active_streams``)."""
        with self._lock:
            return list(self._clients)

    def clear_history(self) -> None:
        """Forget finished streams and recent ITLs; live streams and counters stay."""
        with self._lock:
            self._done.clear()
            self._itls.clear()

    def reset(self) -> None:
        """Forget everything: live and finished streams, clients and counters."""
        with self._lock:
            self._active.clear()
            self._done.clear()
            self._itls.clear()
            self._clients.clear()
            self._counts = dict.fromkeys(self._counts, 0)

    def get_aggregate_metrics(self) -> dict[str, Any]:
        """Counts and p50/p90/p99 of TTFT, ITL, tokens/s, jitter, smoothness (finished streams).

        Percentiles cover the retained finished streams (and recent ITLs); zeros when none.
        """
        with self._lock:
            done = [s.summary for s in self._done.values() if s.summary is not None]
            itls = list(self._itls)
            counts = dict(self._counts)
            active = len(self._active)

        def col(key: str) -> dict[str, float]:
            return summarize(x for x in (d[key] for d in done) if x is not None)

        finished = counts["completed"] + counts["failed"] + counts["cancelled"]
        return {
            "active_streams": active,
            "started_streams": counts["started"],
            "completed_streams": counts["completed"],
            "failed_streams": counts["failed"],
            "cancelled_streams": counts["cancelled"],
            "dropped_streams": counts["dropped"],
            "success_rate": counts["completed"] / finished if finished else 0.0,
            "ttft_ms": col("ttft_ms"),
            "itl_ms": summarize(itls),
            "tokens_per_second": col("tokens_per_second"),
            "duration_ms": col("duration_ms"),
            "jitter_ms": col("jitter_ms"),
            "smoothness_score": col("smoothness_score"),
            "bytes_per_stream": col("total_bytes_sent"),
            "chunk_size_bytes": summarize(
                d["chunk_size_bytes"]["avg"] for d in done if d["chunks_sent"]
            ),
            "total_tokens": sum(d["token_count"] for d in done),
            "stall_events": sum(d["stall_events"] for d in done),
            "slow_reader_streams": sum(1 for d in done if d["backpressure_events"]),
        }

    def get_streaming_quality_report(self) -> dict[str, Any]:
        """Upstream name for :meth:`get_aggregate_metrics`."""
        return self.get_aggregate_metrics()

    def get_client_stats(self, client_id: str) -> dict[str, Any] | None:
        with self._lock:
            c = self._clients.get(client_id)
            if c is None:
                return None
            rate = c.tokens / c.duration_s if c.duration_s > 0 else 0.0
            return {
                "client_id": client_id,
                "total_streams": c.streams,
                "total_tokens_read": c.tokens,
                "average_read_rate_tps": rate,
                "slow_stream_count": c.slow_streams,
                "cancellation_count": c.cancellations,
                "timeout_count": c.timeouts,
                "reconnection_count": c.reconnections,
                "is_slow_client": c.duration_s > 0 and rate < self._slow_tps,
            }
