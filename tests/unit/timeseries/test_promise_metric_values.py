"""Every latency sample of a finished stream has the value ``fakeai.timeseries.names`` defines.

``fold_finished`` turns one finished stream into samples; each sample's sketch keeps the exact
sum and min/max, so the values are checked to the microsecond, not only counted:

    ttft          first chunk - accepted
    itl           each gap between consecutive chunks with tokens
    tpot          (last chunk - first chunk) / (tokens - 1)
    e2e           terminal - accepted
    tokens_per_s  tokens / (terminal - first chunk)
"""

from __future__ import annotations

import itertools

import pytest

from fakeai.services.metrics.tracker import FinishedStream, fold_finished
from fakeai.timeseries import Fold, LogSketch
from fakeai.timeseries import names as n

ACC = 1_700_000_000_000_000
"""Accepted at (µs)."""


def finished_stream(
    tokens: int, chunks_us: list[int], terminal_us: int, **kw: object
) -> FinishedStream:
    times = [ACC + c for c in chunks_us]
    return FinishedStream(
        stream_id="s",
        model="m",
        kind=str(kw.pop("kind", "d")),
        accepted_us=ACC,
        terminal_us=ACC + terminal_us,
        tokens=tokens,
        first_us=times[0] if times else None,
        last_us=times[-1] if times else None,
        itl=LogSketch.of((b - a) / 1e6 for a, b in itertools.pairwise(times)),
        complete=True,
        **kw,  # type: ignore[arg-type]
    )


def _values(fold: Fold) -> dict[str, tuple[int, float, float, float]]:
    """``{metric: (count, sum, min, max)}`` of model ``m``, over every bucket."""
    merged: dict[str, LogSketch] = {}
    for (metric, model, _), s in fold.samples.items():
        assert model == "m"
        merged.setdefault(metric, LogSketch()).merge(s)
    return {k: (s.n, s.total, s.min, s.max) for k, s in merged.items()}


def test_each_sample_of_a_finished_stream_has_its_defined_value() -> None:
    # 5 tokens in 4 chunks (one chunk carries two): first at 0.2 s, last at 0.5 s.
    fold = Fold()
    fold_finished(fold, finished_stream(5, [200_000, 250_000, 350_000, 500_000], 600_000))
    got = _values(fold)
    assert got[n.TTFT] == pytest.approx((1, 0.2, 0.2, 0.2))
    assert got[n.ITL] == pytest.approx((3, 0.3, 0.05, 0.15))
    assert got[n.TPOT] == pytest.approx((1, 0.3 / 4, 0.075, 0.075))  # / (tokens - 1)
    assert got[n.E2E] == pytest.approx((1, 0.6, 0.6, 0.6))
    assert got[n.TOKENS_PER_S] == pytest.approx((1, 5 / 0.4, 12.5, 12.5))
    assert set(got) == {n.TTFT, n.ITL, n.TPOT, n.E2E, n.TOKENS_PER_S}


@pytest.mark.parametrize(
    ("tokens", "chunks_us"),
    [
        (1, [200_000]),  # one token: no gap to divide
        (3, [200_000]),  # all tokens in one chunk: last == first
    ],
)
def test_tpot_needs_two_token_times(tokens: int, chunks_us: list[int]) -> None:
    fold = Fold()
    fold_finished(fold, finished_stream(tokens, chunks_us, 300_000))
    got = _values(fold)
    assert n.TPOT not in got
    assert got[n.TTFT][0] == 1
    assert got[n.E2E][0] == 1


def test_a_stream_without_tokens_has_latency_but_no_token_samples() -> None:
    fold = Fold()
    fold_finished(fold, finished_stream(0, [], 100_000, kind="e", error_code="cancelled"))
    got = _values(fold)
    assert got == {n.E2E: pytest.approx((1, 0.1, 0.1, 0.1))}
    assert fold.counters["m"] == {
        "requests|": 1,
        "errors|cancelled": 1,
        "cancels|": 1,
        "success|abort": 1,
        "req_prompt_tokens|1.0": 1,
        "req_generation_tokens|1.0": 1,
    }


def test_samples_land_in_the_bucket_of_the_terminal_entry() -> None:
    fold = Fold(fine_s=1)
    # First chunk in one second, terminal in the next: one bucket for the whole stream.
    fold_finished(fold, finished_stream(2, [900_000, 950_000], 1_100_000))
    buckets = {b for (_, _, b) in fold.samples}
    assert buckets == {int((ACC + 1_100_000) / 1e6)}
