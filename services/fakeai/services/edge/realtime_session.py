"""One realtime session's state, and the events it answers with: pure, no I/O.

A :class:`Session` holds what a Realtime API connection accumulates: the session
configuration (``session.created`` / ``session.update``), the conversation (items created by
the client, committed input audio, the output of finished responses) and the input audio
buffer. :meth:`Session.generation_body` turns it, with a ``response.create``'s parameters,
into the chat-shaped body the producer streams as a realtime response
(:mod:`fakeai.services.producer.realtime_events`).

Divergences from OpenAI's Realtime API, on purpose (a fake server has no ears):

- no voice activity detection: ``turn_detection`` is ``null`` and a response starts only on
  ``response.create``; committed audio is not transcribed (its item's ``transcript`` is
  ``null``) and stands in the prompt as ``(audio, <seconds> s)``;
- tools are accepted and shown in the session but never called;
- the assistant's words are seeded prose (as on every other endpoint), its audio
  :func:`fakeai.content.audio.synthesize_pcm16` (24 kHz PCM16, the session's only format).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fakeai.content.audio import SAMPLE_RATE

__all__ = ["MAX_BUFFER_BYTES", "RealtimeError", "Session", "error_event", "server_event"]

MAX_BUFFER_BYTES = 15 * 1024 * 1024
"""The input audio buffer's cap (OpenAI's per-append limit is 15 MiB)."""
_VOICES_DEFAULT = "alloy"
_MODALITIES = ("audio", "text")
_PCM = {"type": "audio/pcm", "rate": SAMPLE_RATE}
_SESSION_TTL_S = 1800
_MAX_OUTPUT_TOKENS = 4096
_DEFAULT_INSTRUCTIONS = "You are a helpful, witty and friendly assistant."
_READ_ONLY = frozenset({"id", "object", "type", "model", "expires_at"})
"""Session fields a ``session.update`` cannot change (ignored, as OpenAI does)."""
_ROOT = "root"
"""The ``previous_item_id`` that puts an item at the start of the conversation."""


class RealtimeError(Exception):
    """A client event the session refuses: answered with an ``error`` event (the connection
    stays open)."""

    def __init__(self, message: str, *, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def server_event(type_: str, **fields: Any) -> dict[str, Any]:
    """A server event the edge makes (not logged): ``type`` first, a random ``event_id``."""
    return {"type": type_, "event_id": _id("event"), **fields}


def error_event(
    message: str,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    client_event_id: str | None = None,
) -> dict[str, Any]:
    """The Realtime API's ``error`` event."""
    error = {
        "type": type_,
        "code": code,
        "message": message,
        "param": param,
        "event_id": client_event_id,
    }
    return server_event("error", error=error)


def _text_of(item: Mapping[str, Any]) -> str:
    """The words of a message item, as the prompt shows them."""
    parts: list[str] = []
    for part in item.get("content") or ():
        if not isinstance(part, Mapping):
            continue
        text = part.get("text") or part.get("transcript")
        if isinstance(text, str) and text:
            parts.append(text)
        elif part.get("type") == "input_audio":
            seconds = part.get("_seconds")
            parts.append(f"(audio, {seconds:.1f} s)" if isinstance(seconds, float) else "(audio)")
    return " ".join(parts)


@dataclass(slots=True)
class Session:
    """The state of one realtime connection (module docstring)."""

    model: str
    id: str = field(default_factory=lambda: _id("sess"))
    conversation_id: str = field(default_factory=lambda: _id("conv"))
    created: int = field(default_factory=lambda: int(time.time()))
    config: dict[str, Any] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)
    buffer: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        self.config = {
            "type": "realtime",
            "object": "realtime.session",
            "id": self.id,
            "model": self.model,
            "output_modalities": ["audio"],
            "instructions": _DEFAULT_INSTRUCTIONS,
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "tracing": None,
            "prompt": None,
            "include": None,
            "expires_at": self.created + _SESSION_TTL_S,
            "audio": {
                "input": {
                    "format": dict(_PCM),
                    "transcription": None,
                    "noise_reduction": None,
                    "turn_detection": None,
                },
                "output": {"format": dict(_PCM), "voice": _VOICES_DEFAULT, "speed": 1.0},
            },
        }

    # -- session --------------------------------------------------------------------------

    def update(self, patch: Any) -> dict[str, Any]:
        """Apply a ``session.update``'s ``session`` (objects merged key by key, read-only
        fields ignored); returns the whole new configuration. A refused update changes
        nothing."""
        if not isinstance(patch, Mapping):
            raise RealtimeError("session must be an object", code="invalid_value", param="session")
        modalities = patch.get("output_modalities")
        if modalities is not None:
            _check_modalities(modalities, "session.output_modalities")
        tokens = patch.get("max_output_tokens")
        if tokens is not None:
            _check_max_tokens(tokens, "session.max_output_tokens")
        writable = {k: v for k, v in patch.items() if k not in _READ_ONLY}
        self.config = _merge(self.config, writable, "session")
        return self.config

    # -- conversation ---------------------------------------------------------------------

    def add_item(self, item: Any, previous_item_id: str | None = None) -> dict[str, Any]:
        """Add a client's item (after ``previous_item_id``, first when that is ``"root"``,
        else at the end); returns it as the conversation holds it (``id``, ``object``,
        ``status`` filled in)."""
        if not isinstance(item, Mapping) or not isinstance(item.get("type"), str):
            raise RealtimeError(
                "item must be an object with a type", code="invalid_value", param="item"
            )
        if item["type"] == "message" and item.get("role") not in ("user", "assistant", "system"):
            raise RealtimeError(
                "item.role must be user, assistant or system",
                code="invalid_value",
                param="item.role",
            )
        stored = {"id": _id("item"), **item, "object": "realtime.item", "status": "completed"}
        ids = [i["id"] for i in self.items]
        if stored["id"] in ids:
            raise RealtimeError(
                f"an item with id {stored['id']!r} is already in the conversation",
                code="item_already_exists",
                param="item.id",
            )
        if previous_item_id not in (None, _ROOT, *ids):
            raise RealtimeError(
                f"previous_item_id {previous_item_id!r} is not in the conversation",
                code="item_not_found",
                param="previous_item_id",
            )
        if previous_item_id is None:
            at = len(ids)
        else:
            at = 0 if previous_item_id == _ROOT else ids.index(previous_item_id) + 1
        self.items.insert(at, stored)
        return stored

    def previous_of(self, item_id: str) -> str | None:
        ids = [i["id"] for i in self.items]
        at = ids.index(item_id)
        return ids[at - 1] if at else None

    def append_audio(self, audio: Any) -> None:
        """``input_audio_buffer.append``: base64 PCM16, at most :data:`MAX_BUFFER_BYTES`."""
        try:
            if not isinstance(audio, str):
                raise ValueError(audio)
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise RealtimeError(
                "audio must be base64-encoded PCM16", code="invalid_value", param="audio"
            ) from None
        if len(self.buffer) + len(data) > MAX_BUFFER_BYTES:
            raise RealtimeError(
                f"the input audio buffer holds at most {MAX_BUFFER_BYTES} bytes",
                code="input_audio_buffer_full",
                param="audio",
            )
        self.buffer += data

    def commit_audio(self) -> dict[str, Any]:
        """``input_audio_buffer.commit``: the buffer becomes a user message item."""
        if not self.buffer:
            raise RealtimeError(
                "Error committing input audio buffer: the buffer is empty.",
                code="input_audio_buffer_commit_empty",
            )
        seconds = len(self.buffer) / (2 * SAMPLE_RATE)
        self.buffer.clear()
        part = {"type": "input_audio", "transcript": None, "_seconds": round(seconds, 3)}
        item = self.add_item({"type": "message", "role": "user", "content": [part]})
        return item

    def add_output(self, response: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The output items of a finished response join the conversation."""
        added = []
        for item in response.get("output") or ():
            if isinstance(item, Mapping) and item.get("id") not in {i["id"] for i in self.items}:
                self.items.append(dict(item))
                added.append(dict(item))
        return added

    @staticmethod
    def public(item: Mapping[str, Any]) -> dict[str, Any]:
        """An item as clients see it (without the session's own annotations)."""
        out = dict(item)
        if isinstance(out.get("content"), list):
            out["content"] = [
                {k: v for k, v in p.items() if not k.startswith("_")} if isinstance(p, dict) else p
                for p in out["content"]
            ]
        return out

    # -- responses ------------------------------------------------------------------------

    def generation_body(self, params: Any) -> dict[str, Any]:
        """The chat-shaped body of a ``response.create`` (its ``response`` parameters over the
        session's configuration)."""
        params = params if isinstance(params, Mapping) else {}
        modalities = params.get("output_modalities", self.config["output_modalities"])
        _check_modalities(modalities, "response.output_modalities")
        tokens = params.get("max_output_tokens", self.config["max_output_tokens"])
        _check_max_tokens(tokens, "response.max_output_tokens")
        instructions = params.get("instructions", self.config.get("instructions"))
        out_audio = _merge(self.config["audio"], params.get("audio", {}), "response.audio")[
            "output"
        ]
        items = params.get("input") if isinstance(params.get("input"), list) else self.items
        messages: list[dict[str, Any]] = []
        if isinstance(instructions, str) and instructions:
            messages.append({"role": "system", "content": instructions})
        for item in items:
            if isinstance(item, Mapping) and item.get("type") == "message":
                messages.append({"role": item.get("role", "user"), "content": _text_of(item)})
        if len(messages) == 0:
            messages.append({"role": "system", "content": _DEFAULT_INSTRUCTIONS})
        body: dict[str, Any] = {
            "messages": messages,
            "modalities": list(modalities),
            "realtime": {
                "conversation_id": None
                if params.get("conversation") == "none"
                else self.conversation_id,
                "session_id": self.id,
            },
        }
        if "audio" in modalities:
            body["audio"] = {"voice": out_audio.get("voice") or _VOICES_DEFAULT, "format": "pcm16"}
        if isinstance(tokens, int):
            body["max_tokens"] = tokens
        return body


def _merge(current: Any, patch: Any, param: str) -> Any:
    """``patch`` over ``current``, dicts merged key by key, into new dicts (``current`` is
    left as it was). Where ``current`` is an object, ``patch`` must be one: a
    :class:`RealtimeError` naming ``param`` (the path to it) otherwise."""
    if not isinstance(current, dict):
        return patch
    if not isinstance(patch, Mapping):
        raise RealtimeError(f"{param} must be an object", code="invalid_value", param=param)
    merged = dict(current)
    for key, value in patch.items():
        merged[key] = _merge(merged.get(key), value, f"{param}.{key}")
    return merged


def _check_modalities(value: Any, param: str) -> None:
    if not isinstance(value, list) or len(value) != 1 or value[0] not in _MODALITIES:
        raise RealtimeError(
            f'{param} must be ["audio"] or ["text"]', code="invalid_value", param=param
        )


def _check_max_tokens(value: Any, param: str) -> None:
    ok = value == "inf" or (
        isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= _MAX_OUTPUT_TOKENS
    )
    if not ok:
        raise RealtimeError(
            f'{param} must be an integer from 1 to {_MAX_OUTPUT_TOKENS} or "inf"',
            code="invalid_value",
            param=param,
        )
