"""Plausible, deterministic log probabilities for the token pieces of a response.

Chat (``logprobs: true``, ``top_logprobs: k`` in 0-20) gets OpenAI's object
``{"content": [{token, logprob, bytes, top_logprobs: [...]}], "refusal": null}``; the legacy
Completions API (``logprobs: k`` in 0-5) gets ``{tokens, token_logprobs, top_logprobs,
text_offset}``. Entries follow :func:`fakeai.content.tokenizer.split_pieces`, so a stream that
sends one piece per chunk sends one entry per chunk.

The numbers look like a confident model's: about 60% of chosen tokens are near-certain
(logprob in [-0.02, 0]), 30% are likely (an exponential with mean 0.25), 10% are real
choices (-0.7 to -4). Alternatives share the probability mass the chosen token leaves, so the
``top_logprobs`` of a position never sum past 1; they are listed by logprob, highest first,
and always include the chosen token. Everything comes from the ``random.Random`` the caller
seeds, so a seed gives the same numbers on every run.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from fakeai.content.prose import WORDS

__all__ = [
    "MAX_CHAT_TOP_LOGPROBS",
    "MAX_LEGACY_LOGPROBS",
    "chat_logprobs",
    "completion_logprobs",
    "token_logprobs",
]

MAX_CHAT_TOP_LOGPROBS = 20
"""OpenAI's upper bound on chat ``top_logprobs``."""

MAX_LEGACY_LOGPROBS = 5
"""OpenAI's upper bound on the legacy Completions ``logprobs``."""

_PUNCTUATION = (",", ".", ";", ":", "!", "?", " -", " (", "'s", "\n")
_FLOOR = 1e-9
"""Smallest probability given to an alternative (a logprob of about -20.7)."""


def _chosen_logprob(rng: random.Random) -> float:
    u = rng.random()
    if u < 0.6:
        value = rng.uniform(0.0, 0.02)
    elif u < 0.9:
        value = rng.expovariate(4.0)
    else:
        value = rng.uniform(0.7, 4.0)
    return -round(value, 6) or 0.0  # "or 0.0": never -0.0


def _alternative(rng: random.Random, piece: str) -> str:
    """A token that could stand where ``piece`` does: a word with the same leading space and
    capitalisation for a word piece, else a punctuation mark or a word."""
    body = piece.lstrip()
    lead = piece[: len(piece) - len(body)]
    if body.isalpha():
        word = rng.choice(WORDS)
        return lead + (word.capitalize() if body[:1].isupper() else word)
    if rng.random() < 0.5:
        return rng.choice(_PUNCTUATION)
    return " " + rng.choice(WORDS)


def token_logprobs(rng: random.Random, piece: str, k: int) -> tuple[float, list[tuple[str, float]]]:
    """The chosen ``piece``'s logprob and the ``k`` most likely tokens at its position (the
    piece among them), highest logprob first; ``k`` = 0 gives an empty list."""
    chosen = _chosen_logprob(rng)
    if k <= 0:
        return chosen, []
    top = [(piece, chosen)]
    seen = {piece}
    left = max(0.0, 1.0 - math.exp(chosen))
    while len(top) < k:
        token = _alternative(rng, piece)
        if token in seen:
            continue
        seen.add(token)
        share = left * rng.uniform(0.3, 0.8)
        left -= share
        top.append((token, round(math.log(max(share, _FLOOR)), 6)))
    top.sort(key=lambda entry: entry[1], reverse=True)
    return chosen, top


def _entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}


def chat_logprobs(rng: random.Random, pieces: Sequence[str], k: int) -> dict[str, Any]:
    """A chat choice's ``logprobs`` for its content ``pieces``, ``k`` alternatives each."""
    content = []
    for piece in pieces:
        chosen, top = token_logprobs(rng, piece, k)
        content.append({**_entry(piece, chosen), "top_logprobs": [_entry(t, p) for t, p in top]})
    return {"content": content, "refusal": None}


def completion_logprobs(
    rng: random.Random, pieces: Sequence[str], k: int, *, offset: int = 0, echoed: bool = False
) -> dict[str, Any]:
    """A legacy completion choice's ``logprobs`` for its text ``pieces``.

    ``top_logprobs`` holds the ``k`` likeliest tokens of each position plus the chosen one when
    it is not among them (OpenAI: "up to logprobs+1 elements"). ``text_offset`` counts from the
    start of prompt + completion (``offset`` = the prompt's length when it is not echoed).
    With ``echoed``, the text starts with the prompt, whose first token has no logprob (null).
    """
    tokens: list[str] = []
    logprobs: list[float | None] = []
    tops: list[dict[str, float] | None] = []
    offsets: list[int] = []
    for piece in pieces:
        chosen, top = token_logprobs(rng, piece, k)
        tokens.append(piece)
        offsets.append(offset)
        offset += len(piece)
        if echoed and len(tokens) == 1:
            logprobs.append(None)
            tops.append(None)
            continue
        logprobs.append(chosen)
        tops.append(dict(top) if top else {piece: chosen})
    return {
        "tokens": tokens,
        "token_logprobs": logprobs,
        "top_logprobs": tops,
        "text_offset": offsets,
    }
