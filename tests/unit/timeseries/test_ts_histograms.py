"""Exact per-request histograms (pure): vLLM's bounds, the bucket a value lands in, reading back."""

from __future__ import annotations

import pytest

from fakeai.timeseries import Fold
from fakeai.timeseries import names as n
from fakeai.timeseries.histograms import (
    E2E_BUCKETS,
    EXACT_HISTOGRAMS,
    N_BUCKETS,
    TOKEN_BUCKETS,
    ExactHistogram,
    observe,
    one_two_five,
)


def test_one_two_five_is_vllms_build_1_2_5_buckets() -> None:
    assert one_two_five(100) == (1, 2, 5, 10, 20, 50, 100)
    assert one_two_five(99) == (1, 2, 5, 10, 20, 50)
    assert TOKEN_BUCKETS[-1] == 100_000  # max_model_len 131072
    assert N_BUCKETS == (1, 2, 5, 10, 20)


QUEUE = next(h for h in EXACT_HISTOGRAMS if h.metric == n.REQ_QUEUE_US)


@pytest.mark.parametrize(
    ("units", "label"),
    [
        (0, "0.3"),
        (300_000, "0.3"),  # on the bound: le is inclusive
        (300_001, "0.5"),
        (7_680_000_000, "7680.0"),
        (7_680_000_001, "+Inf"),
    ],
)
def test_a_value_counts_at_the_smallest_bound_at_or_above_it(units: int, label: str) -> None:
    fold = Fold()
    QUEUE.observe(fold, "m", units)
    expected = {f"req_queue_us|{label}": 1}
    if units:
        expected["req_queue_us|sum"] = units
    assert fold.counters == {"m": expected}


def test_negative_values_are_dropped() -> None:
    fold = Fold()
    observe(fold, n.REQ_PREFILL_US, "m", -1)
    assert not fold


def test_read_back_is_cumulative_and_exact() -> None:
    fold = Fold()
    for units in (100_000, 300_000, 400_000, 9_000_000_000):
        QUEUE.observe(fold, "m", units)
    fields = {
        k.partition("|")[2]: v for k, v in fold.counters["m"].items()
    }  # what the renderer parses
    fields["bogus"] = 5  # garbled labels are skipped
    cumulative, count, total = QUEUE.read(fields)
    assert count == 4
    assert total == pytest.approx(9_000.8)
    assert dict(zip(E2E_BUCKETS, cumulative, strict=True))[0.3] == 2
    assert dict(zip(E2E_BUCKETS, cumulative, strict=True))[0.5] == 3
    assert cumulative[-1] == 3  # the fourth is above the last bound: +Inf only


def test_counts_under_an_old_bound_still_read() -> None:
    """A bound list that changed: a count under a bound no longer listed stays at or below it."""
    h = ExactHistogram("x", "x", (1.0, 10.0), 1, "")
    cumulative, count, _ = h.read({"5.0": 2, "1.0": 1})
    assert (cumulative, count) == ([1, 3], 3)
