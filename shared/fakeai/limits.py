"""The caps every generation request is held to, from the settings: checked by the edge (a 400
that names the setting) and again by the producer before any work.

The producer checks too because a request that is already in the requests stream (published by
an older edge, or by anyone who can write to Redis) must not be able to take a producer down.
Issue 10, finding 1: ``{"stream": true, "ignore_eos": true, "max_tokens": 1000000000}`` with
TTFT and ITL 0 had the producer build a billion-token response with its loop blocked, and every
producer that took the request over died the same way. :func:`refusal` is a pure function; in
the producer a request beyond a cap ends at once with an ``e`` entry ``invalid_request`` whose
message names the cap, and nothing is generated.

The caps (``fakeai.config.settings.Settings``):

- ``max_tokens``, ``max_completion_tokens``, ``max_output_tokens``, ``min_tokens``:
  at most ``max_output_tokens``;
- ``n``: at most ``max_choices``;
- the whole output: choices (``n``, times the prompts of a completions request) times the
  tokens one choice may reach, at most ``max_choices * max_output_tokens`` (the most a chat
  request within the caps can ask for), so a list of a hundred thousand prompts is refused too;
- ``X-FakeAI-TTFT-Ms`` / ``X-FakeAI-ITL-Ms`` (``ttft_ms``, ``itl_ms``): finite, >= 0, at most
  ``max_timing_ms``;
- ``stop``: at most :data:`MAX_STOP_SEQUENCES` strings (each is searched for in every choice's
  text).

Values of the wrong type are left to the response builders, which refuse them with
:class:`fakeai.content.InvalidRequestValue` (also an ``invalid_request`` entry).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fakeai.config.settings import Settings
from fakeai.content.responses import NATURAL_MAX
from fakeai.wire import GenerationRequest

__all__ = ["MAX_STOP_SEQUENCES", "Refusal", "output_bound", "refusal"]

MAX_STOP_SEQUENCES = 16
"""OpenAI accepts up to 4 stop sequences (API reference, ``stop``); vLLM more. 16 covers
both; beyond it each choice's text would be searched once per string."""

_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "min_tokens")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused: the request field and a message that names the cap."""

    param: str
    message: str


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _choices(body: Mapping[str, Any], endpoint: str) -> int:
    """Choices the response will hold: ``n``, times the prompts of a completions request."""
    n = _int(body.get("n")) or 1
    if endpoint != "completion":
        return n
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and not all(_int(p) is not None for p in prompt):
        return n * len(prompt)  # a list of prompts (a list of ints is one token-id prompt)
    return n


def output_bound(body: Mapping[str, Any], endpoint: str) -> int:
    """The most token pieces the response to ``body`` can hold (every choice at its cap)."""
    cap = _int(body.get("max_completion_tokens"))
    if cap is None:
        cap = _int(body.get("max_tokens"))
    if cap is None:
        cap = _int(body.get("max_output_tokens"))  # the Responses API's name
    per_choice = max(cap if cap is not None else NATURAL_MAX, _int(body.get("min_tokens")) or 0)
    return _choices(body, endpoint) * per_choice


def refusal(request: GenerationRequest, settings: Settings) -> Refusal | None:
    """None if ``request`` is within every cap (see the module docstring), else why not."""
    body = request.body
    cap = settings.max_output_tokens
    for name in _TOKEN_FIELDS:
        value = _int(body.get(name))
        if value is not None and value > cap:
            return Refusal(
                name,
                f"{name} is {value}, above this server's cap of {cap} output tokens "
                "(setting max_output_tokens)",
            )
    n = _int(body.get("n"))
    if n is not None and n > settings.max_choices:
        return Refusal(
            "n",
            f"n is {n}, above this server's cap of {settings.max_choices} (setting max_choices)",
        )
    budget = settings.max_choices * cap
    bound = output_bound(body, request.endpoint)
    if bound > budget:
        choices = _choices(body, request.endpoint)
        return Refusal(
            "prompt" if request.endpoint == "completion" else "n",
            f"the request asks for up to {bound} output tokens over {choices} choices, above "
            f"this server's cap of {budget} (settings max_choices x max_output_tokens)",
        )
    for name, ms in (("X-FakeAI-TTFT-Ms", request.ttft_ms), ("X-FakeAI-ITL-Ms", request.itl_ms)):
        if ms is None:
            continue
        if not (math.isfinite(ms) and ms >= 0):
            return Refusal(name, f"{name} must be a finite number >= 0, got {ms!r}")
        if ms > settings.max_timing_ms:
            return Refusal(
                name,
                f"{name} is {ms:g}, above this server's cap of {settings.max_timing_ms:g} ms "
                "(setting max_timing_ms)",
            )
    stop = body.get("stop")
    if isinstance(stop, list) and len(stop) > MAX_STOP_SEQUENCES:
        return Refusal(
            "stop", f"stop has {len(stop)} sequences; at most {MAX_STOP_SEQUENCES} are accepted"
        )
    return None
