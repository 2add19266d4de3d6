"""StreamingMetricsTracker: per-stream timings, quality figures, aggregates, retention."""

from __future__ import annotations

import threading

import pytest

from fakeai.hooks import StreamingMetricsHook
from fakeai.streaming_metrics import StreamingMetricsTracker


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tracker(clock: FakeClock) -> StreamingMetricsTracker:
    return StreamingMetricsTracker(clock=clock)


def _stream(
    tracker: StreamingMetricsTracker,
    clock: FakeClock,
    sid: str,
    gaps_ms: list[float],
    ttft_ms: float = 100.0,
    **start: object,
) -> None:
    tracker.start_stream(sid, "gpt-4o", 10, **start)  # type: ignore[arg-type]
    clock.now += ttft_ms / 1000
    tracker.record_token(sid, "Hello", 40)
    for gap in gaps_ms:
        clock.now += gap / 1000
        tracker.record_token(sid, " x", 30)


def test_is_a_streaming_metrics_hook(tracker: StreamingMetricsTracker) -> None:
    hook: StreamingMetricsHook = tracker
    hook.start_stream("s", "gpt-4o")
    hook.record_token("s", "a")
    hook.complete_stream("s", "stop")
    assert tracker.get_aggregate_metrics()["completed_streams"] == 1


def test_metronome_stream(tracker: StreamingMetricsTracker, clock: FakeClock) -> None:
    _stream(tracker, clock, "s", [20.0] * 10, temperature=0.5, max_tokens=64)
    live = tracker.get_stream_stats("s")
    assert live is not None
    assert live["status"] == "active"
    tracker.complete_stream("s", "stop")
    st = tracker.get_stream_stats("s")
    assert st is not None
    assert st["status"] == "completed"
    assert st["finish_reason"] == "stop"
    assert st["token_count"] == 11
    assert st["characters"] == 5 + 10 * 2
    assert st["ttft_ms"] == pytest.approx(100.0)
    assert st["itl_ms"]["p50"] == pytest.approx(20.0)
    assert st["jitter_ms"] == pytest.approx(0.0, abs=1e-6)
    assert st["smoothness_score"] == pytest.approx(100.0)
    assert st["tokens_per_second"] == pytest.approx(50.0)
    assert st["duration_ms"] == pytest.approx(300.0)
    assert st["chunks_sent"] == 11
    assert st["total_bytes_sent"] == 40 + 300
    assert (st["temperature"], st["max_tokens"]) == (0.5, 64)


def test_jittery_stream_scores_lower_and_counts_stalls(
    tracker: StreamingMetricsTracker, clock: FakeClock
) -> None:
    _stream(tracker, clock, "s", [10.0, 30.0, 10.0, 30.0, 600.0])
    tracker.complete_stream("s", "length")
    st = tracker.get_stream_stats("s")
    assert st is not None
    assert st["jitter_ms"] > 100
    assert 0 < st["smoothness_score"] < 70
    assert st["stall_events"] == 1


def test_outcomes_and_aggregates(tracker: StreamingMetricsTracker, clock: FakeClock) -> None:
    for i in range(10):
        _stream(tracker, clock, f"ok{i}", [10.0] * 5, ttft_ms=100.0 + 10 * i)
        tracker.complete_stream(f"ok{i}", "stop")
    _stream(tracker, clock, "gone", [10.0], client_id="c1")
    tracker.record_backpressure("gone")
    tracker.complete_stream("gone", None, client_cancelled=True)
    _stream(tracker, clock, "bad", [])
    tracker.fail_stream("bad", "boom")
    tracker.start_stream("live", "gpt-4o")
    agg = tracker.get_aggregate_metrics()
    assert agg["completed_streams"] == 10
    assert agg["cancelled_streams"] == 1
    assert agg["failed_streams"] == 1
    assert agg["active_streams"] == 1
    assert agg["started_streams"] == 13
    assert agg["success_rate"] == pytest.approx(10 / 12)
    assert agg["ttft_ms"]["min"] == pytest.approx(100.0)
    assert agg["ttft_ms"]["p50"] == pytest.approx(140.0, abs=5.1)
    assert agg["itl_ms"]["p99"] == pytest.approx(10.0)
    assert agg["tokens_per_second"]["p50"] == pytest.approx(100.0)
    assert agg["slow_reader_streams"] == 1
    assert agg["chunk_size_bytes"]["max"] > 30
    bad = tracker.get_stream_stats("bad")
    assert bad is not None
    assert bad["error_message"] == "boom"
    client = tracker.get_client_stats("c1")
    assert client is not None
    assert client["cancellation_count"] == 1
    assert client["slow_stream_count"] == 1
    assert tracker.get_client_stats("nobody") is None


def test_empty_aggregates_are_zeros(tracker: StreamingMetricsTracker) -> None:
    agg = tracker.get_aggregate_metrics()
    assert agg["ttft_ms"]["p99"] == 0.0
    assert agg["success_rate"] == 0.0
    assert tracker.get_stream_stats("nope") is None


def test_unknown_stream_events_are_ignored(tracker: StreamingMetricsTracker) -> None:
    tracker.record_token("nope", "x")
    tracker.complete_stream("nope", "stop")
    tracker.fail_stream("nope", "x")
    assert tracker.get_aggregate_metrics()["completed_streams"] == 0


def test_retention_is_bounded(clock: FakeClock) -> None:
    tracker = StreamingMetricsTracker(
        max_active_streams=5, max_completed_streams=3, max_itl_samples=4, clock=clock
    )
    for i in range(10):
        _stream(tracker, clock, f"s{i}", [5.0, 5.0])
        tracker.complete_stream(f"s{i}", "stop")
    assert tracker.get_stream_stats("s0") is None
    assert tracker.get_stream_stats("s9") is not None
    assert tracker.get_aggregate_metrics()["itl_ms"]["count"] == 4
    for i in range(8):
        tracker.start_stream(f"a{i}", "m")
    assert tracker.get_active_stream_count() == 5
    assert tracker.get_aggregate_metrics()["dropped_streams"] == 3


def test_thread_safe() -> None:
    tracker = StreamingMetricsTracker()

    def work(n: int) -> None:
        for i in range(300):
            sid = f"{n}-{i}"
            tracker.start_stream(sid, "m")
            for _ in range(5):
                tracker.record_token(sid, "t")
            tracker.complete_stream(sid, "stop")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    agg = tracker.get_aggregate_metrics()
    assert agg["completed_streams"] == 1800
    assert agg["total_tokens"] == 1000 * 5  # retained finished streams only


def test_bad_limits_rejected() -> None:
    with pytest.raises(ValueError, match="max_completed_streams"):
        StreamingMetricsTracker(max_completed_streams=0)
