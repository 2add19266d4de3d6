"""Logprobs in a stream: each chunk carries the logprobs of the pieces it sends.

A full response holds a choice's logprobs for all its pieces: chat's ``{"content": [entry per
piece], "refusal": null}`` or the legacy Completions columns ``{tokens, token_logprobs,
top_logprobs, text_offset}``. A stream cuts them per piece (:func:`chat_piece_logprobs`,
:func:`legacy_piece_logprobs`); a unit's delta carries its piece's share under
:data:`LOGPROBS` until the generator's ``choice`` moves it onto the choice; grouped pieces
(``chunk_tokens``) join theirs (:func:`merging_logprobs`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = [
    "LOGPROBS",
    "PieceLogprobs",
    "chat_piece_logprobs",
    "legacy_piece_logprobs",
    "merging_logprobs",
    "split_logprobs",
]

Delta = dict[str, Any]
Merger = Callable[[Delta, Delta], Delta | None]

_LEGACY_COLUMNS = ("tokens", "token_logprobs", "top_logprobs", "text_offset")


LOGPROBS = "logprobs"
"""The key under which a unit's delta carries its piece's logprobs. No OpenAI delta has this
key: a generator's ``choice`` moves it out of the delta onto the choice (``choices[].logprobs``)."""

PieceLogprobs = Callable[[int], Any]
"""The logprobs object of piece ``i`` alone (the shape its chunk carries)."""


def _joined(a: Any, b: Any) -> Any:
    """Two logprobs objects of consecutive pieces as one: their lists concatenated."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return b if a is None else a
    return {
        k: v + b[k] if isinstance(v, list) and isinstance(b.get(k), list) else v
        for k, v in a.items()
    }


def merging_logprobs(merge: Merger) -> Merger:
    """``merge`` for deltas that may carry :data:`LOGPROBS`: the deltas merge as ``merge``
    says, and their logprobs join (a chunk of several pieces carries an entry for each)."""

    def merged(a: Delta, b: Delta) -> Delta | None:
        if LOGPROBS not in a and LOGPROBS not in b:
            return merge(a, b)
        (da, la), (db, lb) = split_logprobs(a), split_logprobs(b)
        out = merge(da, db)
        if out is None:
            return None
        joined = _joined(la, lb)
        return out if joined is None else {**out, LOGPROBS: joined}

    return merged


def split_logprobs(delta: Delta) -> tuple[Delta, Any]:
    """``delta`` without its :data:`LOGPROBS`, and those logprobs (None when it has none)."""
    if LOGPROBS not in delta:
        return delta, None
    rest = dict(delta)
    return rest, rest.pop(LOGPROBS)


def chat_piece_logprobs(logprobs: Any) -> PieceLogprobs | None:
    """Piece ``i``'s share of a chat choice's ``logprobs`` (None: the choice has none)."""
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list):
        return None
    return lambda i: {"content": content[i : i + 1], "refusal": None}


def legacy_piece_logprobs(logprobs: Any) -> PieceLogprobs | None:
    """Piece ``i``'s share of a legacy completion choice's ``logprobs`` columns (None: the
    choice has none)."""
    if not isinstance(logprobs, dict):
        return None
    columns = {k: v for k in _LEGACY_COLUMNS if isinstance(v := logprobs.get(k), list)}
    return lambda i: {k: v[i : i + 1] for k, v in columns.items()}
