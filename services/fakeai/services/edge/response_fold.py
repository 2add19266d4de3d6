"""A Responses API response, folded from the events of its stream's log (pure, no I/O).

The log of a ``resp_…`` stream holds one Responses event per entry, then its terminal entry
(:mod:`fakeai.services.producer.response_events`). ``GET /v1/responses/{id}`` answers with
what they add up to:

- a finished response: the ``response`` of its ``response.completed`` or
  ``response.incomplete`` event, as it was sent;
- one still running: the last ``response`` snapshot (``response.in_progress``) with the output
  so far: items opened by ``response.output_item.added``, grown by the text, summary and
  argument deltas, replaced by ``response.output_item.done``; an image generation call's
  status follows its ``response.image_generation_call.*`` events (its ``result`` comes with
  its ``done``, as on OpenAI: partial images are only events);
- one that ended with an ``e`` entry: that output so far, status ``cancelled`` (code
  ``cancelled``) or ``failed`` with the entry's ``error`` (``{"code", "message"}``);
- no event yet: ``start`` (the caller's stored request, shown ``queued``), or None without
  it; cancelled or failed as above when the log already ended with an ``e`` entry (a
  response cancelled before its producer started it).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import msgspec

from fakeai.streams.log import Entry, Kind
from fakeai.wire import decode_error

__all__ = ["FINAL_TYPES", "fold_response"]

FINAL_TYPES = frozenset({"response.completed", "response.incomplete", "response.failed"})
"""Events that carry the whole finished response."""

_IMAGE_STATUS = {
    "response.image_generation_call.in_progress": "in_progress",
    "response.image_generation_call.generating": "generating",
}
"""Image generation events that move their call's status (``completed`` comes with the item)."""

_decode = msgspec.json.Decoder().decode


class _Fold:
    def __init__(self) -> None:
        self.response: dict[str, Any] | None = None
        self.final = False
        self.items: dict[int, dict[str, Any]] = {}

    def event(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        if isinstance(ev.get("response"), dict):
            self.response = ev["response"]
            self.final = kind in FINAL_TYPES
            return
        index = ev.get("output_index")
        if not isinstance(index, int):
            return
        if kind in ("response.output_item.added", "response.output_item.done"):
            self.items[index] = copy.deepcopy(ev.get("item") or {})
            return
        item = self.items.get(index)
        if item is None:
            return
        if kind == "response.content_part.added":
            item.setdefault("content", []).append(dict(ev.get("part") or {}))
        elif kind == "response.output_text.delta":
            _grow(item.get("content"), ev.get("content_index"), "text", ev.get("delta"))
        elif kind == "response.reasoning_summary_part.added":
            item.setdefault("summary", []).append(dict(ev.get("part") or {}))
        elif kind == "response.reasoning_summary_text.delta":
            _grow(item.get("summary"), ev.get("summary_index"), "text", ev.get("delta"))
        elif kind == "response.function_call_arguments.delta":
            item["arguments"] = str(item.get("arguments", "")) + str(ev.get("delta", ""))
        elif kind in _IMAGE_STATUS:
            item["status"] = _IMAGE_STATUS[kind]


def _grow(parts: Any, index: Any, field: str, delta: Any) -> None:
    if isinstance(parts, list) and isinstance(index, int) and 0 <= index < len(parts):
        parts[index][field] = str(parts[index].get(field, "")) + str(delta or "")


def fold_response(
    entries: Iterable[Entry], start: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The response the entries of a ``resp_…`` log add up to (module docstring); ``start``
    is the response shown until the log holds a snapshot of it."""
    fold = _Fold()
    error: dict[str, Any] | None = None
    for e in entries:
        if e.kind == Kind.CHUNK:
            try:
                ev = _decode(e.data)
            except msgspec.DecodeError:
                continue
            if isinstance(ev, dict):
                fold.event(ev)
        elif e.kind == Kind.ERROR:
            try:
                body = decode_error(e.data).error
                error = {"code": body.code or "server_error", "message": body.message}
            except msgspec.DecodeError:
                error = {"code": "server_error", "message": "the response failed"}
    response = fold.response if fold.response is not None else start
    if response is None or (fold.final and error is None):
        return response
    out = {**response, "output": [fold.items[i] for i in sorted(fold.items)]}
    if error is not None:
        cancelled = error["code"] == "cancelled"
        out["status"] = "cancelled" if cancelled else "failed"
        out["error"] = None if cancelled else error
    return out
