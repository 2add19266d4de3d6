"""The log-bin sketch at its edges (pure): sub-nanosecond values, bins met out of order, a
sample exactly on a histogram bound, ``summary()`` as the query endpoints return it, and the
garbled bucket hashes a scrape must survive.

Written from the mutation testing of ``fakeai/timeseries/sketch.py`` (docs/TESTING.md): each
case kills a mutant the other tests let live.
"""

from __future__ import annotations

import math

import pytest

from fakeai.timeseries.sketch import GAMMA, LogSketch, bin_index, bin_upper, bin_value
from fakeai.timeseries.store import sketch_from_hash

QUANTILES = {"p50": 0.5, "p99": 0.99}


@pytest.mark.parametrize("value", [1e-12, 1e-10, 1e-9, 2e-9, 0.5, 1.0, GAMMA, 7.3, 1e6])
def test_add_puts_a_sample_in_the_bin_that_bin_index_names(value: float) -> None:
    """``add`` inlines ``bin_index``: both must name the same bin for every value."""
    assert LogSketch.of([value]).bins == {bin_index(value): 1}


def test_values_below_a_nanosecond_fold_into_the_smallest_bin() -> None:
    """The bin range is bounded below: 1e-12 s and 1e-9 s share one bin."""
    s = LogSketch.of([1e-12, 1e-15, 1e-9])
    assert s.bins == {bin_index(1e-9): 3}
    assert (s.min, s.max) == (1e-15, 1e-9)


def test_cumulative_le_counts_bins_added_out_of_order() -> None:
    """Samples arrive in any order; the cumulative counts must not depend on it."""
    s = LogSketch()
    for v in (100.0, 0.0, 5.0, 0.01, 100.0, 1.0):
        s.add(v)
    assert next(iter(s.bins)) == bin_index(100.0)  # the first bin met is the largest
    assert s.cumulative_le([0.0, 0.02, 1.0, 6.0, 50.0, 200.0]) == [1, 2, 3, 4, 4, 6]


@pytest.mark.parametrize("index", [-30, -1, 0, 1, 17, 60])
def test_a_sample_exactly_on_a_bound_counts_in_that_bound(index: int) -> None:
    """A bin whose upper value equals a bound counts in it, not in the next bound up."""
    upper = bin_upper(index)
    s = LogSketch.of([upper])
    assert s.bins == {index: 1}
    assert s.cumulative_le([upper / GAMMA, upper, upper * GAMMA]) == [0, 1, 1]


def test_a_bound_of_one_second_holds_a_sample_of_one_second() -> None:
    """1.0 is ``γ^0``, a bin's upper value: it counts at ``le=1``. 1.5 sits in a bin reaching
    past 1.5, so it counts one bound up (late, never early)."""
    s = LogSketch.of([0.5, 1.0, 1.5, 1.9])
    assert s.cumulative_le([1.0, 1.5, 2.0]) == [2, 2, 4]


def test_summary_of_an_empty_sketch_has_no_values() -> None:
    assert LogSketch().summary(QUANTILES) == {
        "count": 0,
        "mean": None,
        "min": None,
        "max": None,
        "p50": None,
        "p99": None,
    }


def test_summary_of_one_sample_is_that_sample() -> None:
    assert LogSketch.of([0.25]).summary(QUANTILES) == {
        "count": 1,
        "mean": 0.25,
        "min": 0.25,
        "max": 0.25,
        "p50": 0.25,
        "p99": 0.25,
    }


def test_summary_gives_exact_extremes_and_the_quantiles_of_the_bins() -> None:
    values = [0.0, 0.1, 0.2, 0.3, 4.0]
    s = LogSketch.of(values)
    summary = s.summary(QUANTILES)
    assert summary["count"] == 5
    assert summary["mean"] == pytest.approx(sum(values) / 5)
    assert (summary["min"], summary["max"]) == (0.0, 4.0)
    assert summary["p50"] == bin_value(bin_index(0.2))
    assert summary["p99"] == bin_value(bin_index(0.3))  # rank 0.99 * 4 is the fourth sample
    assert s.quantile(1.0) == 4.0  # the largest bin's value, clamped to the exact max


def test_summary_never_returns_a_non_finite_number() -> None:
    """A garbled stored sum (inf) must not break a JSON response: its mean is null."""
    s = sketch_from_hash({b"n": b"2", b"sum": b"inf", b"b0": b"2"}, [b"0.99", b"1.0"])
    summary = s.summary(QUANTILES)
    assert summary["mean"] is None
    assert (summary["count"], summary["min"], summary["max"]) == (2, 0.99, 1.0)


def test_summary_has_no_extremes_for_a_bucket_without_a_count() -> None:
    """A bucket whose min/max zset outlived its hash counts nothing and shows no extremes."""
    s = sketch_from_hash({}, [b"0.5", b"2.0"])
    assert (s.min, s.max) == (0.5, 2.0)
    summary = s.summary(QUANTILES)
    assert (summary["count"], summary["min"], summary["max"]) == (0, None, None)


def test_a_count_beyond_the_bins_answers_the_max_not_an_error() -> None:
    """A hash whose ``n`` exceeds its bin counts (garbled, or foreign fields skipped): the
    ranks the bins do not reach answer the exact max when it is known, None otherwise."""
    s = sketch_from_hash({b"n": b"4", b"sum": b"3.0", b"b0": b"1"}, [b"0.5", b"2.0"])
    assert s.quantile(0.0) == bin_value(0)  # rank 0 is in bin 0
    assert s.quantile(1.0) == 2.0
    s_without_extremes = sketch_from_hash({b"n": b"4", b"b0": b"1"})
    assert s_without_extremes.quantile(1.0) is None
    assert not math.isfinite(s_without_extremes.max)
