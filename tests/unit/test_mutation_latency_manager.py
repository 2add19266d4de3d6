"""The latency manager at its edges: a custom default profile, the shape of lognormal jitter,
exact timings of zero-std profiles, load per model and at the knee, the names in argument
errors, the upstream helpers' defaults, and the bounded caches.

Written from the mutation testing of ``fakeai/latency_profiles/manager.py``
(docs/TESTING.md): each case kills a mutant the other tests let live.
"""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from fakeai.latency_profiles import (
    DEFAULT_PROFILE,
    LatencyProfile,
    LatencyProfileManager,
    get_latency_manager,
)
from fakeai.latency_profiles import manager as manager_module


def _flat(name: str = "flat", **overrides: Any) -> LatencyProfile:
    """A profile without jitter: every timing it gives is exact."""
    values: dict[str, Any] = {
        "ttft_ms": 100,
        "ttft_std_ms": 0,
        "itl_ms": 10,
        "itl_std_ms": 0,
        "prefill_ms_per_token": 0.5,
    }
    values.update(overrides)
    return LatencyProfile(name, **values)


def test_the_process_manager_is_made_once_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_module, "_manager", None)
    first = get_latency_manager()
    assert isinstance(first, LatencyProfileManager)
    assert get_latency_manager() is first


def test_a_default_entry_replaces_the_default_profile() -> None:
    mine = _flat("default", ttft_ms=42)
    manager = LatencyProfileManager({"default": mine, "flat": _flat()})
    assert manager.list_models() == ["flat"]
    assert manager.get_profile("default") is mine
    assert manager.get_profile("no-such-model") is mine
    assert manager.plan("no-such-model", output_tokens=1).ttft_s == pytest.approx(0.042)
    assert LatencyProfileManager({"flat": _flat()}).get_profile("default") is DEFAULT_PROFILE
    strict = LatencyProfileManager({"default": mine}, strict=True)
    assert strict.get_profile("default") is mine  # "default" is a known name, even strictly


def test_strict_lookups_list_the_known_models() -> None:
    manager = LatencyProfileManager({"b": _flat("b"), "a": _flat("a")}, strict=True)
    with pytest.raises(ValueError, match=r"^model: unknown model 'x'; known models: a, b$"):
        manager.get_profile("x")


def test_lognormal_jitter_is_right_skewed_and_gaussian_is_not() -> None:
    """Lognormal keeps the mean and puts the median below it, like measured ITL."""
    profile = LatencyProfile("m", ttft_ms=100, ttft_std_ms=0, itl_ms=10, itl_std_ms=3)
    gaps = {
        jitter: [
            x * 1000
            for x in LatencyProfileManager({"m": profile}, jitter=jitter)
            .plan("m", output_tokens=20_000, seed=5)
            .itl_s
        ]
        for jitter in ("gaussian", "lognormal")
    }
    for samples in gaps.values():
        assert statistics.mean(samples) == pytest.approx(10.0, rel=0.02)
    # lognormal median = mean * exp(-ln(1 + 0.3^2) / 2) ≈ 0.958 * mean
    assert statistics.median(gaps["lognormal"]) == pytest.approx(9.58, rel=0.01)
    assert statistics.median(gaps["gaussian"]) == pytest.approx(10.0, rel=0.01)


@pytest.mark.parametrize("jitter", ["gaussian", "lognormal"])
@pytest.mark.parametrize("itl_ms", [10.0, 0.0])
def test_a_profile_without_std_gives_exactly_its_means(jitter: Any, itl_ms: float) -> None:
    manager = LatencyProfileManager({"flat": _flat(itl_ms=itl_ms)}, jitter=jitter)
    plan = manager.plan("flat", output_tokens=4, seed=1)
    assert plan.ttft_s == 0.1
    assert plan.itl_s == (itl_ms / 1000.0,) * 3


def test_load_counts_the_streams_of_the_model_only() -> None:
    manager = LatencyProfileManager({"a": _flat("a", load_itl_factor=3.0, max_concurrency_knee=3)})
    for _ in range(5):
        manager.stream_started("other")
    manager.stream_started("a")
    assert manager.active_streams("a") == 1
    assert manager.active_streams() == 6
    assert manager.load_factor("a") == 1.0  # one stream of its own: unloaded
    assert manager.plan("a", output_tokens=2).itl_s == (0.01,)


@pytest.mark.parametrize(
    ("factor", "knee", "load", "expected"),
    [
        (2.0, 128, 2, 1.0 + 1 / 127),  # the second stream already slows decoding
        (2.0, 3, 2, 1.5),
        (2.0, 3, 3, 2.0),
        (2.0, 3, 50, 2.0),
        (3.0, 2, 2, 3.0),  # a knee of 2: full factor at two streams
        (3.0, 1, 2, 3.0),
        (1.0, 8, 50, 1.0),
    ],
)
def test_load_factor_rises_linearly_to_the_knee(
    factor: float, knee: int, load: int, expected: float
) -> None:
    profile = _flat("m", load_itl_factor=factor, max_concurrency_knee=knee)
    manager = LatencyProfileManager({"m": profile})
    assert manager.load_factor("m", load) == pytest.approx(expected)
    assert manager.get_itl("m", current_load=load) == pytest.approx(0.010 * expected)


def test_get_itl_scales_mean_and_std_with_the_load() -> None:
    profile = LatencyProfile(
        "m", ttft_ms=100, ttft_std_ms=0, itl_ms=10, itl_std_ms=2,
        max_concurrency_knee=2, load_itl_factor=3.0,
    )  # fmt: skip
    manager = LatencyProfileManager({"m": profile})
    manager._rng.seed(11)
    gaps = [manager.get_itl("m", current_load=2) * 1000 for _ in range(4000)]
    assert statistics.mean(gaps) == pytest.approx(30.0, rel=0.02)
    assert statistics.stdev(gaps) == pytest.approx(6.0, rel=0.1)


def test_get_itl_uses_the_load_it_is_given_not_the_tracked_one() -> None:
    manager = LatencyProfileManager({"m": _flat("m", load_itl_factor=3.0, max_concurrency_knee=2)})
    for _ in range(4):
        manager.stream_started("m")
    assert manager.get_itl("m", current_load=0) == 0.010
    assert manager.get_itl("m") == 0.010  # the upstream default: no load


def test_upstream_helper_errors_start_with_the_argument_name() -> None:
    manager = LatencyProfileManager()
    with pytest.raises(ValueError, match=r"^prompt_tokens must be "):
        manager.get_ttft("gpt-4o", prompt_tokens=-1)
    with pytest.raises(ValueError, match=r"^kv_cache_hit_tokens must be "):
        manager.get_ttft("gpt-4o", kv_cache_hit_tokens=-1)
    with pytest.raises(ValueError, match=r"^current_load must be "):
        manager.get_itl("gpt-4o", current_load=-1)


def test_upstream_helpers_are_exact_for_a_profile_without_std() -> None:
    manager = LatencyProfileManager({"flat": _flat()})
    assert manager.get_ttft("flat") == 0.1
    assert manager.get_ttft("flat", prompt_tokens=1000) == pytest.approx(0.6)
    assert manager.get_ttft("flat", prompt_tokens=1000, kv_cache_hit_tokens=800) == (
        pytest.approx(0.2)
    )
    assert manager.get_itl("flat") == 0.01
    assert manager.get_generation_time("flat", output_tokens=3) == pytest.approx(0.12)
    total = manager.get_generation_time(
        "flat", output_tokens=3, prompt_tokens=1000, kv_cache_hit_tokens=800
    )
    assert total == pytest.approx(0.22)
    uncached = manager.get_generation_time("flat", output_tokens=3, prompt_tokens=1000)
    assert uncached == pytest.approx(0.62)


def test_upstream_request_counting_is_per_model() -> None:
    manager = LatencyProfileManager()
    manager.start_request("gpt-4o")
    manager.start_request()
    assert (manager.active_streams("gpt-4o"), manager.active_streams("")) == (1, 1)
    manager.end_request()
    assert (manager.active_streams("gpt-4o"), manager.active_streams("")) == (1, 0)
    manager.end_request("gpt-4o")
    assert manager.get_active_requests() == 0


def test_per_model_state_stays_bounded() -> None:
    """Model names come from requests: the resolution cache holds at most 4096 of them, and a
    model whose streams all finished leaves no counter behind."""
    manager = LatencyProfileManager()
    for i in range(4097):
        manager.resolve(f"model-{i}")
    assert len(manager._resolved) <= 4096
    for i in range(3):
        manager.stream_started(f"model-{i}")
        manager.stream_finished(f"model-{i}")
    assert manager._active == {}
