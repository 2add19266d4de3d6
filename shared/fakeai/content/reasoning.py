"""Which models think before they answer, and what their thinking looks like.

A model reasons when its latency profile says so (:attr:`LatencyProfile.reasoning`: the o-series,
gpt-5, gpt-oss, Qwen3, DeepSeek-R1, as the Responses API decides it too), or when its name is an
o-series, DeepSeek-R1 or ``*-thinking`` name no profile knows (``o1-pro``, ``o4``,
``claude-sonnet-thinking``).

The thinking is seeded prose: ``reasoning_effort`` (``minimal``, ``low``, ``medium`` (the
default), ``high``; ``none`` turns it off) sets a budget of :data:`REASONING_TOKENS` to twice
that, and a token cap gives at most half of itself to it (at least one token), so a small
``max_tokens`` is spent on thinking first, as reasoning models do.
"""

from __future__ import annotations

import random
import re

from fakeai.content.prose import prose
from fakeai.content.tokenizer import split_pieces
from fakeai.latency_profiles import get_latency_manager
from fakeai.latency_profiles.profiles import normalise

__all__ = ["REASONING_TOKENS", "is_reasoning_model", "reasoning_text"]

REASONING_TOKENS = {"minimal": 8, "low": 24, "medium": 64, "high": 160, "xhigh": 320}
"""Reasoning tokens by effort (default ``medium``), before the seeded jitter (up to 2x)."""

_REASONING_NAMES = re.compile(r"^o[1-9](?:-|$)|deepseek-r1|thinking")
"""Reasoning model names outside the profile table (matched on the normalised name)."""


def is_reasoning_model(model: str) -> bool:
    """Does ``model`` reason before it answers (module docstring)?"""
    if get_latency_manager().get_profile(model).reasoning:
        return True
    return _REASONING_NAMES.search(normalise(model)) is not None


def reasoning_text(rng: random.Random, effort: object, cap: int | None) -> str:
    """The thinking of one answer: empty for effort ``none``, else seeded prose of the effort's
    budget, cut to ``max(1, cap // 2)`` token pieces when the answer has a token ``cap``.
    An unknown effort counts as ``medium``."""
    if effort == "none":
        return ""
    base = REASONING_TOKENS.get(str(effort or "medium"), REASONING_TOKENS["medium"])
    tokens = rng.randint(base, base * 2)
    if cap is not None:
        tokens = min(tokens, max(1, cap // 2))
    return "".join(split_pieces(prose(rng, tokens))[:tokens])
