"""The soak probe's pure parts: segment sizes and the RSS slope per role."""

from __future__ import annotations

from typing import Any

import pytest

from fakeai.services.bench.soak import growth_per_1k, segments


@pytest.mark.parametrize(
    ("requests", "every", "expected"),
    [
        (100_000, 25_000, [25_000] * 4),
        (10, 3, [3, 3, 3, 1]),
        (2, 5, [2]),
        (0, 5, []),
    ],
)
def test_segments_cover_every_request_once(requests: int, every: int, expected: list[int]) -> None:
    assert segments(requests, every) == expected
    assert sum(segments(requests, every)) == requests


def test_segments_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="sample_every"):
        segments(10, 0)


def _samples(per_request: dict[str, float], n: int = 5, step: int = 1000) -> list[dict[str, Any]]:
    return [
        {"requests": i * step, "rss": {r: 50e6 + b * i * step for r, b in per_request.items()}}
        for i in range(n)
    ]


def test_growth_is_the_slope_in_kib_per_thousand_requests() -> None:
    got = growth_per_1k(_samples({"edge": 0.0, "producer": 1024.0, "metrics": 102.4}))
    assert got == {"edge": 0.0, "metrics": 100.0, "producer": 1000.0}


def test_growth_leaves_out_the_warm_up() -> None:
    samples = _samples({"edge": 0.0})
    samples[0]["rss"]["edge"] = 10e6  # pools and caches filling up in the first quarter
    assert growth_per_1k(samples) == {"edge": 0.0}
    assert growth_per_1k(samples, skip=0.0)["edge"] > 0


def test_growth_needs_two_samples() -> None:
    assert growth_per_1k([]) == {}
    assert growth_per_1k([{"requests": 0, "rss": {"edge": 1.0}}]) == {}
