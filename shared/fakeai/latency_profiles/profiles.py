"""Latency profiles per model, and how a model name finds its profile.

Figures are plausible public ballparks (vendor benchmarks, Artificial Analysis, vLLM runs),
within the streaming framework's documented ranges: TTFT 90-900 ms, ITL 5-40 ms. Names match
exactly, then as HF-style ids by family and size (``meta-llama/Llama-3.1-8B-Instruct`` ->
``llama-3.1-8b``), then by family rules (``gpt-4o-2024-08-06`` -> ``gpt-4o``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["DEFAULT_PROFILE", "LATENCY_PROFILES", "LatencyProfile", "normalise", "resolve"]


@dataclass(frozen=True, slots=True)
class LatencyProfile:
    """How fast one model answers. Times in milliseconds."""

    name: str
    ttft_ms: float
    """Mean TTFT for a short prompt: queueing, scheduling and the first decode step."""
    ttft_std_ms: float
    itl_ms: float
    """Mean gap between two output tokens with one stream running."""
    itl_std_ms: float
    prefill_ms_per_token: float = 0.05
    """Extra TTFT per uncached prompt token (TTFT grows with prompt length)."""
    max_concurrency_knee: int = 128
    """Concurrent streams at which the ITL has grown by ``load_itl_factor`` (cf. max-num-seqs)."""
    load_itl_factor: float = 2.0
    reasoning: bool = False
    """The model thinks before it answers (o-series, R1, Qwen3): generators may emit reasoning."""

    def __post_init__(self) -> None:
        for attr in ("ttft_ms", "ttft_std_ms", "itl_ms", "itl_std_ms", "prefill_ms_per_token"):
            value = getattr(self, attr)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"LatencyProfile {self.name!r}: {attr} must be >= 0, got {value}")
        if self.max_concurrency_knee < 1:
            raise ValueError(f"LatencyProfile {self.name!r}: max_concurrency_knee must be >= 1")
        if self.load_itl_factor < 1.0:
            raise ValueError(f"LatencyProfile {self.name!r}: load_itl_factor must be >= 1.0")

    @property
    def throughput_tokens_per_sec(self) -> float:
        """Decode rate of one unloaded stream (upstream's attribute name)."""
        return 1000.0 / self.itl_ms if self.itl_ms > 0 else math.inf


def _p(
    name: str,
    ttft: float,
    ttft_std: float,
    itl: float,
    itl_std: float,
    prefill: float,
    knee: int = 128,
    *,
    reasoning: bool = False,
) -> LatencyProfile:
    return LatencyProfile(name, ttft, ttft_std, itl, itl_std, prefill, knee, reasoning=reasoning)


_PROFILES: tuple[LatencyProfile, ...] = (
    # OpenAI hosted models (API-side measurements: TTFT includes network and queueing).
    _p("gpt-4o", 250, 50, 15, 3, 0.08),
    _p("gpt-4o-mini", 180, 35, 10, 2, 0.05, 256),
    _p("gpt-4.1", 300, 60, 14, 3, 0.08),
    _p("gpt-4.1-mini", 200, 40, 9, 2, 0.05, 256),
    _p("gpt-4.1-nano", 120, 25, 5.5, 1.2, 0.03, 256),
    _p("gpt-4-turbo", 400, 80, 20, 5, 0.12),
    _p("gpt-4", 800, 150, 35, 8, 0.2, 64),
    _p("gpt-3.5-turbo", 200, 40, 10, 2, 0.06, 256),
    _p("gpt-5", 600, 120, 12, 2.5, 0.1, reasoning=True),
    _p("gpt-5-mini", 350, 70, 7, 1.5, 0.06, 256, reasoning=True),
    _p("o1", 900, 180, 20, 4, 0.15, 64, reasoning=True),
    _p("o1-mini", 500, 100, 9, 2, 0.08, reasoning=True),
    _p("o3", 850, 170, 18, 4, 0.15, 64, reasoning=True),
    _p("o3-mini", 450, 90, 8, 1.6, 0.07, reasoning=True),
    _p("o4-mini", 400, 80, 7, 1.5, 0.06, reasoning=True),
    _p("gpt-oss-120b", 350, 70, 9, 2, 0.08, reasoning=True),
    _p("gpt-oss-20b", 200, 40, 6, 1.2, 0.04, 256, reasoning=True),
    # Open-weight models as served by vLLM / NIM on one node.
    _p("llama-3.2-1b", 90, 18, 5, 1, 0.01, 512),
    _p("llama-3.2-3b", 110, 22, 6, 1.2, 0.02, 512),
    _p("llama-3.1-8b", 140, 28, 7.5, 1.5, 0.03, 256),
    _p("llama-3.1-70b", 480, 95, 23, 5, 0.15),
    _p("llama-3.3-70b", 450, 90, 22, 4.5, 0.15),
    _p("llama-3.1-405b", 900, 180, 40, 9, 0.45, 32),
    _p("mistral-7b", 145, 30, 8, 1.5, 0.03, 256),
    _p("mixtral-8x7b", 380, 75, 18, 4, 0.1),
    _p("mixtral-8x22b", 550, 110, 25, 5.5, 0.18, 64),
    _p("qwen2.5-7b", 155, 31, 8.5, 1.7, 0.03, 256),
    _p("qwen2.5-72b", 490, 98, 23.5, 5, 0.15),
    _p("qwen3-8b", 150, 30, 8, 1.6, 0.03, 256, reasoning=True),
    _p("qwen3-32b", 350, 70, 16, 3.5, 0.1, reasoning=True),
    _p("qwen3-235b-a22b", 500, 100, 20, 4, 0.14, 64, reasoning=True),
    _p("deepseek-v3", 700, 140, 30, 7, 0.2, 64),
    _p("deepseek-r1", 750, 150, 30, 7, 0.2, 64, reasoning=True),
    # Audio, realtime and image models. A speech "token" is a transcript piece and the audio
    # that speaks it; an image step (a partial image) stands for a fixed number of tokens
    # (fakeai.content.images.STEP_TOKENS), so ITL times the image's refinement.
    _p("tts-1", 220, 45, 12, 2.5, 0.02),
    _p("gpt-4o-mini-tts", 260, 50, 10, 2, 0.02),
    _p("gpt-4o-audio-preview", 320, 65, 18, 4, 0.08),
    _p("whisper-1", 400, 80, 8, 2, 0.02),
    _p("gpt-4o-transcribe", 300, 60, 12, 2.5, 0.02),
    _p("gpt-realtime", 300, 60, 16, 3.5, 0.05),
    _p("gpt-4o-realtime-preview", 350, 70, 18, 4, 0.06),
    _p("gpt-image-1", 900, 180, 40, 8, 0.0, 32),
)

DEFAULT_PROFILE = _p("default", 200, 40, 12, 2.5, 0.05)
"""Used for model names no profile matches (a mid-size model on one GPU)."""

LATENCY_PROFILES: Mapping[str, LatencyProfile] = {p.name: p for p in _PROFILES}

# Family rules for names that are not a profile name once normalised: first match wins, so
# more specific patterns come first. Applied to the lower-cased name without org prefix.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), name)
    for pattern, name in (
        (r"^gpt-4o(?:-mini)?-tts", "gpt-4o-mini-tts"),
        (r"^tts-1", "tts-1"),
        (r"^gpt-4o(?:-mini)?-transcribe", "gpt-4o-transcribe"),
        (r"^whisper", "whisper-1"),
        (r"^gpt-4o(?:-mini)?-realtime", "gpt-4o-realtime-preview"),
        (r"^gpt-realtime", "gpt-realtime"),
        (r"^gpt-4o(?:-mini)?-audio", "gpt-4o-audio-preview"),
        (r"^gpt-image", "gpt-image-1"),
        (r"^(?:chatgpt-)?gpt-4o-mini", "gpt-4o-mini"),
        (r"^(?:chatgpt-)?gpt-4o", "gpt-4o"),
        (r"^gpt-4\.1-nano", "gpt-4.1-nano"),
        (r"^gpt-4\.1-mini", "gpt-4.1-mini"),
        (r"^gpt-4\.1", "gpt-4.1"),
        (r"^gpt-4-(?:turbo|\d{4}-preview|vision)", "gpt-4-turbo"),
        (r"^gpt-4(?:-|$)", "gpt-4"),
        (r"^gpt-3\.5", "gpt-3.5-turbo"),
        (r"^gpt-5(?:\.\d+)?-(?:mini|nano)", "gpt-5-mini"),
        (r"^gpt-5(?:\.\d+)?(?:-|$)", "gpt-5"),
        (r"^gpt-oss-120b", "gpt-oss-120b"),
        (r"^gpt-oss-20b", "gpt-oss-20b"),
        (r"^o1-mini", "o1-mini"),
        (r"^o1(?:-|$)", "o1"),
        (r"^o3-mini", "o3-mini"),
        (r"^o3(?:-|$)", "o3"),
        (r"^o4-mini", "o4-mini"),
        (r"mixtral-8x22b", "mixtral-8x22b"),
        (r"mixtral-8x7b", "mixtral-8x7b"),
        (r"mistral-7b", "mistral-7b"),
        (r"deepseek-r1(?!-distill)", "deepseek-r1"),
        (r"deepseek-v3", "deepseek-v3"),
        (r"^qwen-?3(?:-|$)", "qwen3-32b"),
    )
)
# "meta-llama/Llama-3.1-8B-Instruct", "Meta-Llama-3-70B", "llama3.2:3b" (Ollama).
_LLAMA = re.compile(r"llama-?(\d(?:\.\d)?)-(\d+)b")
_QWEN = re.compile(r"qwen-?(2\.5|3)-(\d+)b")


def normalise(model: str) -> str:
    """Lower case, no ``ft:`` wrapper, no org prefix, separators as ``-``."""
    name = model.strip().lower()
    if name.startswith("ft:"):  # fine-tuned: "ft:gpt-4o-mini:org::id"
        name = name.split(":")[1]
    name = name.rsplit("/", 1)[-1]  # "meta-llama/Llama-3.1-8B-Instruct"
    return re.sub(r"[\s_:]+", "-", name)  # "llama3.1:8b" (Ollama) -> "llama3.1-8b"


def resolve(name: str, profiles: Mapping[str, LatencyProfile]) -> str | None:
    """The profile name for a :func:`normalise`-d model name, or None."""
    if name in profiles:
        return name
    if m := _LLAMA.search(name):
        version = "3.1" if m.group(1) in ("3", "3.0") else m.group(1)
        candidate = f"llama-{version}-{m.group(2)}b"
        if candidate in profiles:
            return candidate
    if m := _QWEN.search(name):
        candidate = f"qwen{m.group(1)}-{m.group(2)}b"
        if candidate in profiles:
            return candidate
    for pattern, target in _RULES:
        if target in profiles and pattern.search(name):
            return target
    return None
