"""Reading the request fields the response builders honour, with OpenAI's bounds.

A bad value raises :class:`InvalidRequestValue` naming the field (``param``), which the
producer turns into an OpenAI ``invalid_request_error``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fakeai.content.logprobs import MAX_CHAT_TOP_LOGPROBS, MAX_LEGACY_LOGPROBS

__all__ = [
    "MAX_N",
    "InvalidRequestValue",
    "Limits",
    "chat_top_logprobs",
    "legacy_logprobs",
    "opt_int",
    "parse_limits",
    "parse_n",
]

MAX_N = 128
"""OpenAI's upper bound on ``n``."""


class InvalidRequestValue(ValueError):
    """A request field has a value the builders cannot honour; ``param`` names the field."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class Limits:
    """The length controls of one request (the builders' module docstring)."""

    max_tokens: int | None
    min_tokens: int
    ignore_eos: bool
    stop: tuple[str, ...]


def opt_int(
    body: Mapping[str, Any], name: str, minimum: int, maximum: int | None = None
) -> int | None:
    """``body[name]`` as an int in ``[minimum, maximum]``, or None when absent."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestValue(name, f"{name} must be an integer >= {minimum}; got {value!r}")
    if value < minimum:
        raise InvalidRequestValue(name, f"{name} must be >= {minimum}; got {value}")
    if maximum is not None and value > maximum:
        raise InvalidRequestValue(name, f"{name} must be <= {maximum}; got {value}")
    return value


def parse_n(body: Mapping[str, Any]) -> int:
    """``n`` (1 to :data:`MAX_N`, default 1)."""
    n = opt_int(body, "n", 1)
    if n is None:
        return 1
    if n > MAX_N:
        raise InvalidRequestValue("n", f"n must be between 1 and {MAX_N}; got {n}")
    return n


def parse_limits(body: Mapping[str, Any]) -> Limits:
    """``max_completion_tokens`` (or ``max_tokens``), ``min_tokens``, ``ignore_eos``, ``stop``."""
    max_tokens = opt_int(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = opt_int(body, "max_tokens", 1)
    min_tokens = opt_int(body, "min_tokens", 0) or 0
    if max_tokens is not None and min_tokens > max_tokens:
        raise InvalidRequestValue(
            "min_tokens", f"min_tokens ({min_tokens}) must be <= max_tokens ({max_tokens})"
        )
    stop = body.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,) if stop else ()
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = tuple(s for s in stop if s)
    else:
        raise InvalidRequestValue(
            "stop", f"stop must be a string or a list of strings; got {stop!r}"
        )
    return Limits(max_tokens, min_tokens, bool(body.get("ignore_eos", False)), stops)


def chat_top_logprobs(body: Mapping[str, Any]) -> int | None:
    """Alternatives per token when a chat request asks for logprobs (``logprobs: true``,
    ``top_logprobs`` 0-20, default 0); None when it does not. ``top_logprobs`` above 0
    without ``logprobs: true`` is refused, as OpenAI does."""
    top = opt_int(body, "top_logprobs", 0, MAX_CHAT_TOP_LOGPROBS)
    if body.get("logprobs") is True:
        return top or 0
    if top:
        raise InvalidRequestValue("top_logprobs", "top_logprobs requires logprobs: true")
    return None


def legacy_logprobs(body: Mapping[str, Any]) -> int | None:
    """The legacy Completions ``logprobs`` (0-5 alternatives per token), or None (also for
    ``false``)."""
    if body.get("logprobs") is False:
        return None
    return opt_int(body, "logprobs", 0, MAX_LEGACY_LOGPROBS)
