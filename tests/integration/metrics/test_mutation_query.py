"""Latency over a window, at its edges: the window error's code and text, bucket plans with
fine buckets wider than a second and a window of exactly the fine retention, and
``query_latency`` on a real Redis (exact min/max from the zsets, the ``now`` it is given,
the resolution it reports, the windows it refuses).

Written from the mutation testing of ``fakeai/timeseries/query.py`` (docs/TESTING.md): each
case kills a mutant the other tests let live.
"""

from __future__ import annotations

import math
import time

import pytest

from fakeai.config import Settings
from fakeai.errors import BadRequest
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient
from fakeai.timeseries import SampleRecorder
from fakeai.timeseries.query import parse_window, plan_buckets, query_latency
from fakeai.timeseries.store import COARSE, FINE

S2 = Settings(ts_fine_s=2, ts_fine_keep_s=600, ts_coarse_s=60, ts_coarse_keep_s=86_400)


def test_a_bad_window_is_a_coded_400_that_names_the_bounds() -> None:
    with pytest.raises(BadRequest) as e:
        parse_window("-3", S2)
    assert e.value.code == "invalid_window"
    assert e.value.message == (
        "window must be a number of seconds in (0, 86400] (the coarse retention), got '-3'"
    )


@pytest.mark.parametrize(
    ("now", "window", "expected"),
    [
        (1001.0, 5, [(FINE, 996), (FINE, 998), (FINE, 1000)]),
        # 880 .. 1001: fine 880..898, coarse 900 (900..959), fine 960..1000
        (1001.0, 121, [*((FINE, b) for b in range(880, 900, 2)), (COARSE, 900),
                       *((FINE, b) for b in range(960, 1001, 2))]),
        # exactly the fine retention still reads fine buckets at its ends
        (1001.0, 600, [*((FINE, b) for b in range(400, 420, 2)),
                       *((COARSE, b) for b in range(420, 960, 60)),
                       *((FINE, b) for b in range(960, 1001, 2))]),
        (1001.0, 601, [(COARSE, b) for b in range(360, 961, 60)]),
    ],
)  # fmt: skip
def test_plans_step_by_the_fine_resolution(
    now: float, window: float, expected: list[tuple[str, int]]
) -> None:
    assert plan_buckets(now, window, S2) == expected


@pytest.mark.redis
async def test_query_reads_exact_extremes_at_the_time_it_is_given(
    rc: RedisClient, keys: Keys
) -> None:
    settings = Settings(key_prefix=keys.prefix)
    # Five minutes ago: still kept, but only a query given this "now" sees them in 30 s.
    at = float(int(time.time()) - 300)
    rec = SampleRecorder(rc, keys, settings)
    for value in (0.013, 0.5, 0.2, 0.9):
        rec.add("ttft", "m1", value, at=at)
    rec.add("ttft", "m2", 2.5, at=at + 1)
    rec.add("itl", "m2", 0.02, at=at + 1)
    await rec.flush()

    out = await query_latency(rc, keys, settings, model=None, window_s=30, now=at + 5)
    assert (out["window_s"], out["resolution_s"]) == (30, settings.ts_fine_s)
    assert sorted(out["models"]) == ["m1", "m2"]
    m1 = out["models"]["m1"]["ttft"]
    assert (m1["count"], m1["min"], m1["max"]) == (4, 0.013, 0.9)
    assert m1["mean"] == pytest.approx((0.013 + 0.5 + 0.2 + 0.9) / 4)
    m2 = out["models"]["m2"]
    assert (m2["ttft"]["min"], m2["ttft"]["max"]) == (2.5, 2.5)
    assert (m2["itl"]["count"], m2["itl"]["min"], m2["itl"]["max"]) == (1, 0.02, 0.02)
    everything = out["all"]["ttft"]
    assert (everything["count"], everything["min"], everything["max"]) == (5, 0.013, 2.5)

    assert (await query_latency(rc, keys, settings, model=None, window_s=30))["all"]["ttft"][
        "count"
    ] == 0  # now: the samples are far outside the window

    edge = await query_latency(
        rc, keys, settings, model="m1", window_s=settings.ts_fine_keep_s, now=at + 5
    )
    assert edge["resolution_s"] == settings.ts_fine_s  # fine up to the fine retention itself
    coarse = await query_latency(
        rc, keys, settings, model="m1", window_s=settings.ts_fine_keep_s + 1, now=at + 5
    )
    assert coarse["resolution_s"] == settings.ts_coarse_s
    assert coarse["models"]["m1"]["ttft"]["count"] == 4


@pytest.mark.redis
@pytest.mark.parametrize("window", [0.0, -1.0, math.inf, math.nan])
async def test_query_refuses_a_window_that_is_not_a_positive_number(
    rc: RedisClient, keys: Keys, window: float
) -> None:
    with pytest.raises(ValueError, match=r"^window_s must be a finite number > 0, got "):
        await query_latency(rc, keys, Settings(key_prefix=keys.prefix), model=None, window_s=window)


@pytest.mark.redis
async def test_query_accepts_a_window_under_a_second(rc: RedisClient, keys: Keys) -> None:
    out = await query_latency(rc, keys, Settings(key_prefix=keys.prefix), model=None, window_s=0.5)
    assert out["window_s"] == 0.5
    assert out["models"] == {}
