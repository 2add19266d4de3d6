"""MetricsTracker: counters, windowed rates, percentiles, streams, thread safety, snapshots."""

from __future__ import annotations

import json
import threading

import pytest

from fakeai.hooks import MetricsHook
from fakeai.metrics import MetricsTracker, summarize

EP = "/v1/chat/completions"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tracker(clock: FakeClock) -> MetricsTracker:
    return MetricsTracker(window_s=60.0, clock=clock)


def test_summarize_percentiles() -> None:
    stats = summarize(float(x) for x in range(1, 101))
    assert stats["count"] == 100
    assert stats["avg"] == pytest.approx(50.5)
    assert (stats["min"], stats["max"]) == (1.0, 100.0)
    assert stats["p50"] == pytest.approx(50.5)
    assert stats["p90"] == pytest.approx(90.1)
    assert stats["p99"] == pytest.approx(99.01)
    assert summarize([]) == {
        "count": 0, "avg": 0.0, "min": 0.0, "max": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0,
    }  # fmt: skip


def test_is_a_metrics_hook(tracker: MetricsTracker) -> None:
    hook: MetricsHook = tracker
    hook.track_request(EP)
    assert tracker.get_metrics()["requests"][EP]["total"] == 1


def test_get_metrics_is_complete_and_json_able_when_idle_and_busy(
    tracker: MetricsTracker, clock: FakeClock
) -> None:
    empty = tracker.get_metrics()
    json.dumps(empty)
    assert empty["streaming_stats"]["ttft"]["p99"] == 0.0
    # Regression (upstream /metrics KeyError 'rate' once traffic existed): every series has
    # every key for every endpoint that saw any traffic at all.
    tracker.track_error("/v1/completions")
    tracker.track_request(EP)
    metrics = tracker.get_metrics()
    json.dumps(metrics)
    keys = {"rate", "total", "count", "avg", "min", "max", "p50", "p90", "p99"}
    for series in ("requests", "responses", "tokens", "errors"):
        for endpoint in (EP, "/v1/completions"):
            assert set(metrics[series][endpoint]) == keys
    assert "fakeai_errors_total" in tracker.get_prometheus_metrics()


def test_rates_cover_the_window_and_totals_are_cumulative(
    tracker: MetricsTracker, clock: FakeClock
) -> None:
    for i in range(120):
        clock.now = 1000.0 + i * 0.5  # 2 requests per second for 60 s
        tracker.track_request(EP)
        tracker.track_tokens(EP, 10)
    m = tracker.get_metrics()
    assert m["requests"][EP]["rate"] == pytest.approx(2.0, rel=0.05)
    assert m["tokens"][EP]["rate"] == pytest.approx(20.0, rel=0.05)
    clock.now += 120  # everything leaves the window; totals stay
    m = tracker.get_metrics()
    assert m["requests"][EP]["rate"] == 0.0
    assert m["requests"][EP]["total"] == 120
    assert m["tokens"][EP]["total"] == 1200


def test_young_tracker_rate_is_not_diluted_by_the_full_window(
    tracker: MetricsTracker, clock: FakeClock
) -> None:
    for _ in range(10):
        tracker.track_request(EP)
    clock.now += 5
    assert tracker.get_metrics()["requests"][EP]["rate"] == pytest.approx(2.0)


def test_response_latency_percentiles_over_the_window(
    tracker: MetricsTracker, clock: FakeClock
) -> None:
    for ms in range(1, 101):
        tracker.track_response(EP, ms / 1000)
    stats = tracker.get_metrics()["responses"][EP]
    assert stats["count"] == 100
    assert stats["p50"] == pytest.approx(0.0505)
    assert stats["p99"] == pytest.approx(0.09901)
    assert tracker.get_metrics()["requests"][EP]["p99"] == 0.0  # latency only on responses
    clock.now += 61
    assert tracker.get_metrics()["responses"][EP]["count"] == 0


def test_stream_lifecycle(tracker: MetricsTracker, clock: FakeClock) -> None:
    tracker.start_stream("s1", EP)
    tracker.start_stream("s2", EP)
    assert tracker.get_active_streams() == 2
    clock.now += 0.25
    tracker.track_stream_first_token("s1")
    clock.now += 0.5
    tracker.track_stream_first_token("s1")  # a second call does not move the TTFT
    tracker.track_stream_token("s1", 50)
    clock.now += 0.25
    tracker.complete_stream("s1", EP)
    tracker.fail_stream("s2", EP, "boom")
    tracker.track_stream_token("gone", 3)  # unknown ids are ignored
    s = tracker.get_streaming_stats()
    assert (s["active_streams"], s["completed_streams"], s["failed_streams"]) == (0, 1, 1)
    assert s["ttft"]["p50"] == pytest.approx(0.25)
    assert s["tokens_per_second"]["p50"] == pytest.approx(50.0)
    m = tracker.get_metrics()
    assert m["errors"][EP]["total"] == 1
    assert m["streams"][EP]["duration"]["max"] == pytest.approx(1.0)
    assert m["responses"][EP]["count"] == 0  # response latency comes from track_response only
    assert m["streams"][EP]["started"] == 2


def test_memory_is_bounded(clock: FakeClock) -> None:
    tracker = MetricsTracker(max_samples=100, max_active_streams=10, clock=clock)
    for i in range(1000):
        tracker.track_response(EP, 0.001 * i)
        tracker.start_stream(f"s{i}", EP)
    assert tracker.get_metrics()["responses"][EP]["count"] == 100
    assert tracker.get_active_streams() == 10


def test_bad_construction_is_rejected() -> None:
    with pytest.raises(ValueError, match="window_s"):
        MetricsTracker(window_s=0)


def test_thread_safe_counts() -> None:
    tracker = MetricsTracker()

    def work(n: int) -> None:
        for i in range(2000):
            tracker.track_request(EP)
            tracker.start_stream(f"{n}-{i}", EP)
            tracker.track_stream_token(f"{n}-{i}")
            tracker.complete_stream(f"{n}-{i}", EP)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    m = tracker.get_metrics()
    assert m["requests"][EP]["total"] == 16_000
    assert m["streaming_stats"]["completed_streams"] == 16_000
    assert m["streaming_stats"]["active_streams"] == 0


def test_reset(tracker: MetricsTracker) -> None:
    tracker.track_request(EP)
    tracker.reset()
    assert tracker.get_metrics()["requests"] == {}
