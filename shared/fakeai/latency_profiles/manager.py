"""The latency manager: a model's profile turned into the schedule of one stream.

The model follows the decomposition used by llm-d-inference-sim and AIPerf's mock server:

- TTFT = overhead + (prompt_tokens - cached_tokens) * prefill_ms_per_token; the overhead is
  sampled (Gaussian, std capped at 30 % of the mean, clamped to +-70 %), prefill is not;
- decode: one inter-token gap per later token, sampled **per token** (Gaussian, or a
  mean-preserving lognormal), with the same std cap and clamp;
- load: the mean ITL is multiplied by a factor that grows linearly with the number of
  concurrent streams of the model, from 1.0 (one stream) to ``load_itl_factor`` at
  ``max_concurrency_knee`` streams, and stays there.

Upstream FakeAI (0.3) draws one ITL per stream, so its streams are unrealistically smooth;
here every gap is its own draw. Per-request overrides (``ttft_ms`` / ``itl_ms``) are exact: no
jitter, no prefill, no load, so tests and benchmarks get fixed timings.

Compatibility surface: ``get_latency_manager()`` and FakeAI 0.3's ``LatencyProfileManager``
calls (``get_ttft``, ``get_itl``, ``get_generation_time``, ``start_request``/``end_request``,
``get_active_requests``, ``reset_load``); see ``docs/library.md``.
"""

from __future__ import annotations

import functools
import math
import random
import threading
from collections.abc import Mapping
from statistics import NormalDist
from typing import Literal

from fakeai.latency_profiles.profiles import (
    DEFAULT_PROFILE,
    LATENCY_PROFILES,
    LatencyProfile,
    normalise,
    resolve,
)
from fakeai.timing import TimingPlan

__all__ = ["Jitter", "LatencyProfileManager", "get_latency_manager"]

Jitter = Literal["gaussian", "lognormal"]
_JITTERS: tuple[str, ...] = ("gaussian", "lognormal")

_STD_CAP = 0.30
"""Largest std as a fraction of the mean (llm-d-inference-sim caps jitter at 30 %)."""
_CLAMP = 0.70
"""Samples are clamped to mean * (1 +- _CLAMP), so no gap is ever near 0 or absurdly long."""


_LEVELS = 1024
_Z: tuple[float, ...] = tuple(NormalDist().inv_cdf((i + 0.5) / _LEVELS) for i in range(_LEVELS))
"""Standard normal quantiles at evenly spaced probabilities: a sample is one random entry."""


@functools.lru_cache(maxsize=256)
def _quantile_table(mean: float, std: float, jitter: Jitter) -> tuple[float, ...]:
    """Quantiles of the clamped jitter distribution around ``mean`` (``std <= 30 %`` of it)."""
    lo, hi = mean * (1 - _CLAMP), mean * (1 + _CLAMP)
    if jitter == "lognormal":
        # Mean-preserving: E[exp(N(mu, s^2))] = exp(mu + s^2/2) = mean.
        s2 = math.log1p((std / mean) ** 2)
        mu, s = math.log(mean) - s2 / 2, math.sqrt(s2)
        return tuple(min(hi, max(lo, math.exp(mu + s * z))) for z in _Z)
    return tuple(min(hi, max(lo, mean + std * z)) for z in _Z)


def _check_count(arg: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"{arg} must be >= 0, got {value}")


def _check_override(arg: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{arg} must be a finite number >= 0 (ms), got {value}")


class LatencyProfileManager:
    """Looks up a model's profile and turns it into a :class:`~fakeai.timing.TimingPlan`.

    Implements :class:`fakeai.timing.LatencyModel`. Thread-safe: the load counters sit behind a
    lock; sampling uses its own ``random.Random`` per seeded call.

    Args:
        profiles: profiles by name (default: :data:`LATENCY_PROFILES`); a ``"default"`` entry,
            if present, replaces :data:`DEFAULT_PROFILE`.
        strict: unknown model names raise ``ValueError`` instead of using the default profile.
        jitter: ``"gaussian"`` or ``"lognormal"`` (mean-preserving, right-skewed like real ITL).
    """

    def __init__(
        self,
        profiles: Mapping[str, LatencyProfile] | None = None,
        *,
        strict: bool = False,
        jitter: Jitter = "gaussian",
    ) -> None:
        if jitter not in _JITTERS:
            raise ValueError(f"jitter must be one of {', '.join(_JITTERS)}; got {jitter!r}")
        table = dict(LATENCY_PROFILES if profiles is None else profiles)
        self._default = table.pop("default", DEFAULT_PROFILE)
        self._profiles: dict[str, LatencyProfile] = table
        self._strict = strict
        self._jitter: Jitter = jitter
        self._rng = random.Random()
        self._lock = threading.Lock()
        self._active: dict[str, int] = {}
        self._resolved: dict[str, str | None] = {}

    # -- profiles ---------------------------------------------------------------------------

    def list_models(self) -> list[str]:
        """Names of the known profiles (not ``default``), sorted."""
        return sorted(self._profiles)

    def resolve(self, model: str) -> str | None:
        """The profile name ``model`` maps to, or None when only the default fits."""
        try:
            return self._resolved[model]
        except KeyError:
            pass
        name = resolve(normalise(model), self._profiles)
        if len(self._resolved) >= 4096:  # bounded: model names come from requests
            self._resolved.clear()
        self._resolved[model] = name
        return name

    def get_profile(self, model: str, strict: bool | None = None) -> LatencyProfile:
        """The profile for ``model``: exact name, HF-style id, or family/size match.

        Unknown names get the default profile, or a ``ValueError`` listing the known names when
        ``strict`` (per call, else the manager's setting) is true.
        """
        if model == "default":
            return self._default
        name = self.resolve(model)
        if name is not None:
            return self._profiles[name]
        if self._strict if strict is None else strict:
            raise ValueError(
                f"model: unknown model {model!r}; known models: {', '.join(self.list_models())}"
            )
        return self._default

    # -- load --------------------------------------------------------------------------------

    def stream_started(self, model: str) -> None:
        """Count one more concurrent stream of ``model`` (call before :meth:`plan`)."""
        with self._lock:
            self._active[model] = self._active.get(model, 0) + 1

    def stream_finished(self, model: str) -> None:
        with self._lock:
            n = self._active.get(model, 0) - 1
            if n > 0:
                self._active[model] = n
            else:
                self._active.pop(model, None)

    def active_streams(self, model: str | None = None) -> int:
        """Concurrent streams of ``model``, or of all models."""
        with self._lock:
            return sum(self._active.values()) if model is None else self._active.get(model, 0)

    def load_factor(self, model: str, current_load: int | None = None) -> float:
        """ITL multiplier for ``current_load`` concurrent streams (default: the tracked count).

        1.0 for one stream, rising linearly to ``load_itl_factor`` at ``max_concurrency_knee``.
        """
        profile = self.get_profile(model)
        load = self.active_streams(model) if current_load is None else current_load
        if load <= 1 or profile.load_itl_factor == 1.0:
            return 1.0
        span = max(1, profile.max_concurrency_knee - 1)
        return 1.0 + (profile.load_itl_factor - 1.0) * min(1.0, (load - 1) / span)

    # -- sampling ------------------------------------------------------------------------------

    def _rng_for(self, seed: int | None) -> random.Random:
        return self._rng if seed is None else random.Random(seed)

    def _sample_ttft_ms(
        self, profile: LatencyProfile, rng: random.Random, prompt_tokens: int, cached_tokens: int
    ) -> float:
        overhead = self._samples(rng, profile.ttft_ms, profile.ttft_std_ms, 1)[0]
        uncached = max(0, prompt_tokens - cached_tokens)
        return overhead + uncached * profile.prefill_ms_per_token

    def _samples(self, rng: random.Random, mean: float, std: float, n: int) -> list[float]:
        """``n`` draws around ``mean`` (std capped at 30 % of it), clamped to +-70 %."""
        if n <= 0:
            return []
        std = min(std, _STD_CAP * mean)
        if std <= 0:
            return [mean] * n
        # Drawing from a table of quantiles costs one uniform draw per token: ~4x faster than
        # gauss() plus clamping, and 1024 levels are far finer than any timer resolution.
        return rng.choices(_quantile_table(mean, std, self._jitter), k=n)

    def plan(
        self,
        model: str,
        *,
        output_tokens: int,
        prompt_tokens: int = 0,
        cached_tokens: int = 0,
        seed: int | None = None,
        ttft_ms: float | None = None,
        itl_ms: float | None = None,
        current_load: int | None = None,
    ) -> TimingPlan:
        """The schedule of one stream of ``output_tokens`` tokens.

        Args:
            prompt_tokens: prompt length (each uncached token adds ``prefill_ms_per_token``).
            cached_tokens: prompt tokens found in the KV cache (capped at ``prompt_tokens``).
            seed: same seed, same plan (``random.Random(seed)``); None draws fresh randomness.
            ttft_ms, itl_ms: exact overrides (no jitter, prefill or load); 0 and 0 = at once.
            current_load: concurrent streams to assume (default: streams counted by
                :meth:`stream_started` for this model).
        """
        _check_count("output_tokens", output_tokens)
        _check_count("prompt_tokens", prompt_tokens)
        _check_count("cached_tokens", cached_tokens)
        _check_override("ttft_ms", ttft_ms)
        _check_override("itl_ms", itl_ms)
        if current_load is not None:
            _check_count("current_load", current_load)
        gaps = max(0, output_tokens - 1)
        if ttft_ms is not None and itl_ms is not None:
            return TimingPlan(ttft_ms / 1000.0, (itl_ms / 1000.0,) * gaps)
        profile = self.get_profile(model)
        rng = self._rng_for(seed)
        if ttft_ms is None:
            ttft = self._sample_ttft_ms(profile, rng, prompt_tokens, cached_tokens) / 1000.0
        else:
            ttft = ttft_ms / 1000.0
        if itl_ms is not None:
            itl: tuple[float, ...] = (itl_ms / 1000.0,) * gaps
        else:
            scale = self.load_factor(model, current_load) / 1000.0
            mean, std = profile.itl_ms * scale, profile.itl_std_ms * scale
            itl = tuple(self._samples(rng, mean, std, gaps))
        return TimingPlan(ttft, itl)

    # -- upstream-compatible helpers (seconds) ------------------------------------------------

    def get_ttft(
        self,
        model: str,
        prompt_tokens: int = 0,
        kv_cache_hit: bool = False,
        kv_cache_hit_tokens: int = 0,
        current_load: int = 0,
        temperature: float = 1.0,
    ) -> float:
        """One sampled TTFT in seconds (``kv_cache_hit_tokens`` skip prefill).

        ``kv_cache_hit``, ``current_load`` and ``temperature`` are accepted for compatibility;
        load slows decoding (ITL) in this model, not the first token.
        """
        _check_count("prompt_tokens", prompt_tokens)
        _check_count("kv_cache_hit_tokens", kv_cache_hit_tokens)
        profile = self.get_profile(model)
        return self._sample_ttft_ms(profile, self._rng, prompt_tokens, kv_cache_hit_tokens) / 1e3

    def get_itl(self, model: str, temperature: float = 1.0, current_load: int = 0) -> float:
        """One sampled inter-token gap in seconds, at ``current_load`` concurrent streams."""
        _check_count("current_load", current_load)
        profile = self.get_profile(model)
        factor = self.load_factor(model, current_load)
        return (
            self._samples(self._rng, profile.itl_ms * factor, profile.itl_std_ms * factor, 1)[0]
            / 1e3
        )

    def get_generation_time(
        self, model: str, output_tokens: int, prompt_tokens: int = 0, kv_cache_hit_tokens: int = 0
    ) -> float:
        """Seconds from request to last token for one sampled plan."""
        return self.plan(
            model,
            output_tokens=output_tokens,
            prompt_tokens=prompt_tokens,
            cached_tokens=kv_cache_hit_tokens,
        ).total_s

    def start_request(self, model: str = "") -> None:
        """Upstream name for :meth:`stream_started`."""
        self.stream_started(model)

    def end_request(self, model: str = "") -> None:
        """Upstream name for :meth:`stream_finished`."""
        self.stream_finished(model)

    def get_active_requests(self) -> int:
        return self.active_streams()

    def reset_load(self) -> None:
        with self._lock:
            self._active.clear()


_manager: LatencyProfileManager | None = None
_manager_lock = threading.Lock()


def get_latency_manager() -> LatencyProfileManager:
    """The process-wide :class:`LatencyProfileManager` (created on first use)."""
    global _manager
    if _manager is None:
        with _manager_lock:
            if _manager is None:
                _manager = LatencyProfileManager()
    return _manager
