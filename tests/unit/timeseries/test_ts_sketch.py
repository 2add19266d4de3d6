"""The log-bin sketch, the fold and its key layout, bucket planning and window parsing (pure)."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import pytest

from fakeai.config import Settings
from fakeai.errors import BadRequest
from fakeai.streams import Keys
from fakeai.timeseries.query import parse_window, plan_buckets
from fakeai.timeseries.sketch import GAMMA, LogSketch, bin_index, bin_upper, bin_value
from fakeai.timeseries.store import (
    COARSE,
    FINE,
    Fold,
    counter_field,
    parse_counter_field,
    sketch_from_hash,
)


def _exact(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[int(q * (len(s) - 1))]


@pytest.mark.parametrize(
    ("value", "index"),
    [(1.0, 0), (GAMMA, 1), (GAMMA * 1.0001, 2), (0.0, None), (-1.0, None), (math.nan, None)],
)
def test_bin_index(value: float, index: int | None) -> None:
    assert bin_index(value) == index


def test_bin_value_is_within_two_percent_of_its_range() -> None:
    for i in (-300, -10, 0, 7, 200):
        lo, hi, v = GAMMA ** (i - 1), bin_upper(i), bin_value(i)
        assert lo < v < hi
        assert abs(v - lo) / lo <= 0.02
        assert abs(hi - v) / hi <= 0.02


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_quantiles_within_two_percent(seed: int) -> None:
    rnd = random.Random(seed)
    values = [rnd.lognormvariate(math.log(0.25), 0.8) for _ in range(20_000)]
    s = LogSketch.of(values)
    assert s.n == len(values)
    assert s.mean == pytest.approx(sum(values) / len(values))
    for q in (0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 1.0):
        assert s.quantile(q) == pytest.approx(_exact(values, q), rel=0.02), q


def test_merge_equals_one_sketch_of_everything() -> None:
    rnd = random.Random(4)
    a = [rnd.expovariate(10) for _ in range(500)]
    b = [rnd.expovariate(2) for _ in range(700)] + [0.0]
    merged = LogSketch.of(a)
    merged.merge(LogSketch.of(b))
    whole = LogSketch.of(a + b)
    assert merged.bins == whole.bins
    assert (merged.n, merged.min, merged.max) == (whole.n, whole.min, whole.max)
    assert merged.total == pytest.approx(whole.total)


def test_empty_and_zero() -> None:
    assert LogSketch().quantile(0.5) is None
    assert LogSketch().summary({"p50": 0.5}) == {
        "count": 0, "mean": None, "min": None, "max": None, "p50": None,
    }  # fmt: skip
    z = LogSketch.of([0.0, 0.0, 1.0])
    assert z.quantile(0.5) == 0.0
    with pytest.raises(ValueError, match="quantile q"):
        z.quantile(1.5)


def test_cumulative_le_is_monotonic_and_exact_on_bin_bounds() -> None:
    s = LogSketch.of([0.0, 0.001, 0.01, 0.1, 1.0, 10.0])
    counts = s.cumulative_le([0.0, 0.001, 0.01, 0.05, 0.1, 1.0, 100.0])
    assert counts == sorted(counts)
    assert counts[0] == 1  # the zero bin
    assert counts[-1] == 6
    assert counts[-2] in (4, 5)  # 1.0 is a bin bound (γ^0): counted at le=1.0


def test_sketch_round_trips_through_a_hash_reply() -> None:
    s = LogSketch.of([0.0, 0.5, 0.5, 2.0])
    fields: dict[bytes, bytes] = {b"n": b"4", b"sum": str(s.total).encode(), b"junk": b"x"}
    for i, c in s.bins.items():
        fields[(b"z" if i is None else f"b{i}".encode())] = str(c).encode()
    back = sketch_from_hash(fields, [0.0, 2.0])
    assert back.bins == s.bins
    assert (back.n, back.min, back.max) == (4, 0.0, 2.0)


def test_counter_fields() -> None:
    assert counter_field("requests") == "requests|"
    assert parse_counter_field(counter_field("errors", "E|x")) == ("errors", "E|x")
    assert parse_counter_field(b"success|stop") == ("success", "stop")
    assert parse_counter_field(b"garbage") is None
    assert parse_counter_field("|label") is None


def test_fold_groups_by_fine_bucket() -> None:
    f = Fold(fine_s=1)
    f.add("ttft", "m", 0.1, 100.2)
    f.add("ttft", "m", 0.2, 100.9)
    f.add("ttft", "m", 0.3, 101.0)
    f.add("ttft", "m", math.inf, 101.0)
    f.incr("requests", "m", 2)
    f.incr("requests", "m")
    assert {k: s.n for k, s in f.samples.items()} == {("ttft", "m", 100): 2, ("ttft", "m", 101): 1}
    assert f.counters == {"m": {"requests|": 3}}


class _Recorder:
    """A pipeline stand-in that records the keys each queued command names."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda key, *args, **kw: self.calls.append((name, key))


def test_fold_writes_one_model_in_its_own_slot() -> None:
    """A model's writes name only keys of its hash tag (one MULTI/EXEC on a cluster); the
    model set is a key of its own, written by register() only."""
    keys = Keys("p")
    f = Fold(fine_s=1)
    for model in ("m1", "m2"):
        f.add("ttft", model, 0.1, 100.0)
        f.incr("requests", model)
    f.incr("invalid_events", "unknown")
    assert f.models == ["m1", "m2", "unknown"]
    pipe = _Recorder()
    f.write(pipe, keys, S, "m1")
    assert pipe.calls
    assert {key.split(":")[2] for _, key in pipe.calls} == {"{m1}"}
    assert ("hincrby", keys.counters("m1")) in pipe.calls
    everything = _Recorder()
    f.write(everything, keys, S)
    assert {key.split(":")[2] for _, key in everything.calls} == {"{m1}", "{m2}", "{unknown}"}
    assert all(name != "sadd" for name, _ in everything.calls)
    reg = _Recorder()
    f.register(reg, keys)
    assert reg.calls == [("sadd", keys.ts_models())]


def test_fold_select_keeps_the_models_asked_for() -> None:
    f = Fold(fine_s=1)
    f.add("ttft", "a", 0.1, 100.0)
    f.add("ttft", "b", 0.2, 100.0)
    f.incr("requests", "b", 2)
    only_b = f.select({"b"})
    assert only_b.models == ["b"]
    assert list(only_b.samples) == [("ttft", "b", 100)]
    assert only_b.counters == {"b": {"requests|": 2}}
    assert not f.select(set())


S = Settings(ts_fine_s=1, ts_fine_keep_s=3600, ts_coarse_s=60, ts_coarse_keep_s=86_400)


@pytest.mark.parametrize(
    ("now", "window", "expected"),
    [
        (1000.5, 3, [(FINE, 997), (FINE, 998), (FINE, 999), (FINE, 1000)]),
        # 850.5 .. 1000.5: fine 850..899, coarse 900 (900..959), fine 960..1000
        (1000.5, 150, [*((FINE, b) for b in range(850, 900)), (COARSE, 900),
                       *((FINE, b) for b in range(960, 1001))]),
        # beyond fine retention: coarse only, start rounded down
        (10_000.0, 7200, [(COARSE, b) for b in range(2760, 10_001, 60)]),
    ],
)  # fmt: skip
def test_plan_buckets(now: float, window: float, expected: list[tuple[str, int]]) -> None:
    assert plan_buckets(now, window, S) == expected


def test_plan_covers_the_window_without_overlap() -> None:
    for window in (1, 59, 60, 61, 119, 600, 3599, 3600):
        plan = plan_buckets(12_345.6, window, S)
        spans = sorted((b, b + (1 if r == FINE else 60)) for r, b in plan)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
        assert spans[0][0] <= 12_345.6 - window
        assert spans[-1][1] > 12_345.6


@pytest.mark.parametrize("raw", ["-1", "0", "nan", "NaN", "inf", "x", "1e9", "86401"])
def test_bad_windows_are_400_naming_the_param(raw: str) -> None:
    with pytest.raises(BadRequest) as e:
        parse_window(raw, S)
    assert e.value.param == "window"
    assert "window" in e.value.message


def test_window_default_and_bounds() -> None:
    assert parse_window(None, S) == 60
    assert parse_window("0.5", S) == 0.5
    assert parse_window("86400", S) == 86_400
