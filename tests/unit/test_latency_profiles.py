"""Latency profiles: name matching, plan shape, jitter bounds, overrides, load, validation."""

from __future__ import annotations

import statistics
import threading

import pytest

from fakeai.latency_profiles import (
    DEFAULT_PROFILE,
    LATENCY_PROFILES,
    LatencyProfile,
    LatencyProfileManager,
    get_latency_manager,
)
from fakeai.timing import LatencyModel, TimingPlan


@pytest.fixture
def manager() -> LatencyProfileManager:
    return LatencyProfileManager()


def test_singleton_is_one_manager_and_a_latency_model() -> None:
    first = get_latency_manager()
    assert first is get_latency_manager()
    model: LatencyModel = first  # static check that it implements the protocol
    assert isinstance(model.plan("gpt-4o", output_tokens=3), TimingPlan)


@pytest.mark.parametrize(
    ("model", "profile"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("GPT-4o-mini", "gpt-4o-mini"),
        ("ft:gpt-4o-mini:acme::abc123", "gpt-4o-mini"),
        ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
        ("gpt-4-0613", "gpt-4"),
        ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("o1-preview", "o1"),
        ("o1-mini", "o1-mini"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("o4-mini", "o4-mini"),
        ("gpt-5-mini", "gpt-5-mini"),
        ("openai/gpt-oss-120b", "gpt-oss-120b"),
        ("meta-llama/Llama-3.1-8B-Instruct", "llama-3.1-8b"),
        ("meta-llama/Meta-Llama-3.1-405B-Instruct-FP8", "llama-3.1-405b"),
        ("Meta-Llama-3-70B-Instruct", "llama-3.1-70b"),
        ("meta-llama/Llama-3.2-1B-Instruct", "llama-3.2-1b"),
        ("llama3.2:3b", "llama-3.2-3b"),
        ("meta-llama/Llama-3.3-70B-Instruct", "llama-3.3-70b"),
        ("mistralai/Mixtral-8x22B-Instruct-v0.1", "mixtral-8x22b"),
        ("mistralai/Mistral-7B-Instruct-v0.3", "mistral-7b"),
        ("Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b"),
        ("Qwen/Qwen3-235B-A22B", "qwen3-235b-a22b"),
        ("qwen3-14b", "qwen3-32b"),
        ("deepseek-ai/DeepSeek-V3", "deepseek-v3"),
        ("deepseek-ai/DeepSeek-R1", "deepseek-r1"),
    ],
)
def test_names_match_by_family_and_size(
    manager: LatencyProfileManager, model: str, profile: str
) -> None:
    assert manager.get_profile(model).name == profile


def test_unknown_model_gets_default_unless_strict(manager: LatencyProfileManager) -> None:
    assert manager.get_profile("my-own-model") is DEFAULT_PROFILE
    assert manager.get_profile("deepseek-r1-distill-foo-9b") is DEFAULT_PROFILE
    with pytest.raises(ValueError, match=r"model: unknown model 'my-own-model'.*gpt-4o"):
        manager.get_profile("my-own-model", strict=True)
    strict = LatencyProfileManager(strict=True)
    with pytest.raises(ValueError, match="known models"):
        strict.plan("nope", output_tokens=1)
    assert strict.get_profile("nope", strict=False) is DEFAULT_PROFILE


def test_list_models_and_figures_are_plausible(manager: LatencyProfileManager) -> None:
    names = manager.list_models()
    assert names == sorted(LATENCY_PROFILES)
    assert "default" not in names
    for required in ("gpt-4o", "llama-3.1-70b", "mixtral-8x7b", "qwen2.5-72b", "deepseek-r1"):
        assert required in names
    for p in LATENCY_PROFILES.values():
        assert 90 <= p.ttft_ms <= 900, p.name
        assert 5 <= p.itl_ms <= 40, p.name
    gpt4o = manager.get_profile("gpt-4o")
    assert (gpt4o.ttft_ms, gpt4o.itl_ms) == (250, 15)
    assert manager.get_profile("o1").reasoning
    assert not gpt4o.reasoning


def test_plan_is_deterministic_for_a_seed(manager: LatencyProfileManager) -> None:
    a = manager.plan("gpt-4o", output_tokens=50, seed=7)
    b = manager.plan("gpt-4o", output_tokens=50, seed=7)
    c = manager.plan("gpt-4o", output_tokens=50, seed=8)
    assert a == b
    assert a != c
    assert a.tokens == 50
    assert len(a.itl_s) == 49


@pytest.mark.parametrize("jitter", ["gaussian", "lognormal"])
def test_itl_is_sampled_per_token_within_bounds(jitter: str) -> None:
    manager = LatencyProfileManager(jitter=jitter)  # type: ignore[arg-type]
    plan = manager.plan("gpt-4o", output_tokens=5000, seed=1)
    itl_ms = [x * 1000 for x in plan.itl_s]
    assert len(set(itl_ms)) > 100  # per token, not one draw per stream
    assert statistics.mean(itl_ms) == pytest.approx(15.0, rel=0.03)
    assert statistics.stdev(itl_ms) == pytest.approx(3.0, rel=0.15)
    assert min(itl_ms) >= 15 * 0.3 - 1e-9
    assert max(itl_ms) <= 15 * 1.7 + 1e-9


def test_std_is_capped_at_thirty_percent_and_samples_clamped() -> None:
    wild = LatencyProfile("wild", ttft_ms=100, ttft_std_ms=500, itl_ms=10, itl_std_ms=50)
    manager = LatencyProfileManager({"wild": wild})
    plan = manager.plan("wild", output_tokens=4000, seed=3)
    itl_ms = [x * 1000 for x in plan.itl_s]
    assert statistics.stdev(itl_ms) <= 10 * 0.3 * 1.05
    assert min(itl_ms) >= 3.0 - 1e-9
    assert max(itl_ms) <= 17.0 + 1e-9
    ttfts = [manager.plan("wild", output_tokens=1, seed=s).ttft_s * 1000 for s in range(300)]
    assert min(ttfts) >= 30.0 - 1e-9
    assert max(ttfts) <= 170.0 + 1e-9


def test_ttft_grows_with_prompt_and_shrinks_with_cache_hits() -> None:
    flat = LatencyProfile("flat", ttft_ms=100, ttft_std_ms=0, itl_ms=10, itl_std_ms=0,
                          prefill_ms_per_token=0.5)  # fmt: skip
    manager = LatencyProfileManager({"flat": flat})
    assert manager.plan("flat", output_tokens=1).ttft_s == pytest.approx(0.100)
    assert manager.plan("flat", output_tokens=1, prompt_tokens=1000).ttft_s == pytest.approx(0.600)
    hit = manager.plan("flat", output_tokens=1, prompt_tokens=1000, cached_tokens=800)
    assert hit.ttft_s == pytest.approx(0.200)
    # More cached tokens than prompt tokens cannot make TTFT shorter than the overhead.
    assert manager.plan("flat", output_tokens=1, cached_tokens=50).ttft_s == pytest.approx(0.100)


def test_overrides_are_exact(manager: LatencyProfileManager) -> None:
    plan = manager.plan("gpt-4o", output_tokens=4, prompt_tokens=5000, ttft_ms=20, itl_ms=15)
    assert plan == TimingPlan(0.020, (0.015, 0.015, 0.015))
    assert manager.plan("gpt-4o", output_tokens=3, ttft_ms=0, itl_ms=0).total_s == 0.0
    only_itl = manager.plan("gpt-4o", output_tokens=10, itl_ms=5, seed=1)
    assert set(only_itl.itl_s) == {0.005}
    assert only_itl.ttft_s > 0.05  # still the profile's sampled TTFT
    only_ttft = manager.plan("gpt-4o", output_tokens=10, ttft_ms=1, seed=1)
    assert only_ttft.ttft_s == 0.001
    assert len(set(only_ttft.itl_s)) > 1


def test_itl_grows_with_concurrent_streams_up_to_the_cap() -> None:
    prof = LatencyProfile("m", ttft_ms=100, ttft_std_ms=0, itl_ms=10, itl_std_ms=0,
                          max_concurrency_knee=11, load_itl_factor=3.0)  # fmt: skip
    manager = LatencyProfileManager({"m": prof})
    manager.stream_started("m")
    assert manager.plan("m", output_tokens=2).itl_s == pytest.approx((0.010,))
    for _ in range(5):
        manager.stream_started("m")
    assert manager.active_streams("m") == 6
    assert manager.load_factor("m") == pytest.approx(2.0)
    assert manager.plan("m", output_tokens=2).itl_s == pytest.approx((0.020,))
    assert manager.plan("m", output_tokens=2, current_load=500).itl_s == pytest.approx((0.030,))
    # Overrides ignore load: fixed timings stay fixed.
    assert manager.plan("m", output_tokens=2, itl_ms=10).itl_s == (0.010,)
    for _ in range(10):
        manager.stream_finished("m")  # more finishes than starts never go negative
    assert manager.active_streams("m") == 0
    assert manager.load_factor("m") == 1.0


def test_stream_counting_is_thread_safe(manager: LatencyProfileManager) -> None:
    def work() -> None:
        for _ in range(2000):
            manager.stream_started("gpt-4o")
            manager.stream_finished("gpt-4o")
        manager.stream_started("gpt-4o")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert manager.active_streams("gpt-4o") == 8
    assert manager.get_active_requests() == 8
    manager.reset_load()
    assert manager.active_streams() == 0


@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        ({"output_tokens": -1}, "output_tokens"),
        ({"output_tokens": 1, "prompt_tokens": -5}, "prompt_tokens"),
        ({"output_tokens": 1, "cached_tokens": -1}, "cached_tokens"),
        ({"output_tokens": 1, "ttft_ms": -1.0}, "ttft_ms"),
        ({"output_tokens": 1, "itl_ms": float("nan")}, "itl_ms"),
        ({"output_tokens": 1, "itl_ms": float("inf")}, "itl_ms"),
        ({"output_tokens": 1, "current_load": -2}, "current_load"),
    ],
)
def test_bad_arguments_name_the_argument(
    manager: LatencyProfileManager, kwargs: dict[str, float], arg: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{arg} must be "):  # the message starts with it
        manager.plan("gpt-4o", **kwargs)  # type: ignore[arg-type]


def test_bad_profile_and_jitter_are_rejected() -> None:
    with pytest.raises(ValueError, match="itl_ms"):
        LatencyProfile("x", ttft_ms=1, ttft_std_ms=0, itl_ms=-1, itl_std_ms=0)
    with pytest.raises(ValueError, match="gaussian, lognormal"):
        LatencyProfileManager(jitter="uniform")  # type: ignore[arg-type]


def test_upstream_helpers_return_seconds(manager: LatencyProfileManager) -> None:
    ttft = manager.get_ttft("gpt-4o", prompt_tokens=100, kv_cache_hit_tokens=50)
    assert 0.075 <= ttft <= 0.425 + 50 * 0.08 / 1000
    itl = manager.get_itl("gpt-4o", current_load=1)
    assert 0.0045 <= itl <= 0.0255
    total = manager.get_generation_time("gpt-4o", output_tokens=100)
    assert 0.075 + 99 * 0.0045 <= total <= 0.425 + 99 * 0.0255
    assert manager.get_profile("gpt-4o").throughput_tokens_per_sec == pytest.approx(1000 / 15)


def test_zero_output_tokens_is_a_plan_with_only_ttft(manager: LatencyProfileManager) -> None:
    plan = manager.plan("gpt-4o", output_tokens=0, ttft_ms=5, itl_ms=5)
    assert plan.itl_s == ()
    assert plan.ttft_s == 0.005
