"""plan_series: which buckets make which points (pure, table-driven)."""

from __future__ import annotations

import pytest

from fakeai.config import Settings
from fakeai.errors import BadRequest
from fakeai.timeseries.series import MAX_POINTS, parse_metric, parse_step, plan_series
from fakeai.timeseries.store import COARSE, FINE

SETTINGS = Settings(ts_fine_s=1, ts_fine_keep_s=3600, ts_coarse_s=60, ts_coarse_keep_s=604800)
NOW = 1_700_000_123.5


@pytest.mark.parametrize(
    ("window", "step", "resolution", "step_s"),
    [
        (300, None, FINE, 5),  # 300 / 60 points
        (300, 7, FINE, 7),
        (300, 0.2, FINE, 1),  # rounded up to a whole fine bucket
        (60, None, FINE, 1),
        (3600, None, COARSE, 60),  # a step of a coarse bucket reads coarse buckets
        (3600, 30, FINE, 30),
        (3600, 90, COARSE, 120),  # whole coarse buckets
        (86400, None, COARSE, 1440),  # beyond fine retention
        (86400, 100, COARSE, 120),
        (300, 10**9, COARSE, 300),  # a step is never longer than the window
    ],
)
def test_plan_resolution_and_step(
    window: float, step: float | None, resolution: str, step_s: int
) -> None:
    plan = plan_series(NOW, window, step, SETTINGS)
    assert (plan.resolution, plan.step_s) == (resolution, step_s)
    assert plan.step_s % plan.resolution_s == 0


@pytest.mark.parametrize(("window", "step"), [(300, None), (300, 7), (3600, 90), (86400, None)])
def test_points_cover_the_window_and_every_bucket_once(window: float, step: float | None) -> None:
    plan = plan_series(NOW, window, step, SETTINGS)
    starts = list(plan.starts)
    assert starts[0] <= NOW - window < starts[0] + plan.step_s
    assert starts[-1] <= NOW < starts[-1] + plan.step_s
    assert all(s % plan.step_s == 0 for s in starts)
    buckets = [b for s in starts for b in plan.buckets(s)]
    assert buckets == list(range(starts[0], starts[-1] + plan.step_s, plan.resolution_s))


def test_too_many_points_is_a_400_naming_step() -> None:
    with pytest.raises(BadRequest) as e:
        plan_series(NOW, 3600, 1, SETTINGS)
    assert e.value.param == "step"
    assert plan_series(NOW, 1000, 1, SETTINGS).points <= MAX_POINTS + 1


@pytest.mark.parametrize("raw", ["", None])
def test_step_default(raw: str | None) -> None:
    assert parse_step(raw) is None


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "x"])
def test_bad_step(raw: str) -> None:
    with pytest.raises(BadRequest) as e:
        parse_step(raw)
    assert e.value.param == "step"


@pytest.mark.parametrize("raw", [None, "", "TTFT", "latency"])
def test_bad_metric(raw: str | None) -> None:
    with pytest.raises(BadRequest) as e:
        parse_metric(raw)
    assert e.value.param == "metric"


def test_metric_names() -> None:
    assert parse_metric("ttft") == "ttft"
    assert parse_metric("itl") == "itl"
