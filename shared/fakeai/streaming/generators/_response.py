"""Reading a full response of any shape: dicts, pydantic models, msgspec structs, dataclasses,
and plain objects read by attribute.

The framework document types ``full_response`` as ``Any``, and code written for FakeAI 0.3
passes its own objects (``obj.choices[0].message.content``) or the openai SDK's
``ChatCompletion``. Generators work on dicts, so :func:`to_dict` turns each level of a response
into one: a ``dict`` as it is (the hot path: one type check), other mappings copied, pydantic
models dumped, msgspec structs and dataclasses converted, and any other object read attribute
by attribute for the OpenAI fields a :data:`Spec` names (recursively, so a plain object's
``choices`` list of plain objects becomes a list of dicts).

A field a generator cannot do without (a response's ``choices``, a chat choice's ``message``, a
completion choice's ``text``) is checked at the level where it is read, for every input shape:
:class:`MissingFieldError` names it with its path (``full_response.choices[0].message``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import msgspec

__all__ = [
    "AUDIO",
    "CHOICE",
    "FUNCTION",
    "MESSAGE",
    "RESPONSE",
    "TOOL_CALL",
    "USAGE",
    "MissingFieldError",
    "Spec",
    "read_response",
    "require",
    "to_dict",
]

Spec = Mapping[str, Any]
"""Field name -> how to read its value: None (as it is), a nested Spec (an object), or a
one-element list holding the Spec of each item (a list of objects)."""

_DETAILS: Spec = dict.fromkeys(("cached_tokens", "audio_tokens", "reasoning_tokens"))
USAGE: Spec = {
    "prompt_tokens": None,
    "completion_tokens": None,
    "total_tokens": None,
    "prompt_tokens_details": _DETAILS,
    "completion_tokens_details": _DETAILS,
}
FUNCTION: Spec = {"name": None, "arguments": None}
TOOL_CALL: Spec = {"id": None, "type": None, "function": FUNCTION}
AUDIO: Spec = dict.fromkeys(("id", "data", "transcript", "expires_at"))
MESSAGE: Spec = {
    "role": None,
    "content": None,
    "refusal": None,
    "reasoning_content": None,
    "tool_calls": [TOOL_CALL],
    "audio": AUDIO,
}
CHOICE: Spec = {
    "index": None,
    "message": MESSAGE,
    "text": None,
    "finish_reason": None,
    "logprobs": None,
}
RESPONSE: Spec = {
    "id": None,
    "object": None,
    "created": None,
    "model": None,
    "system_fingerprint": None,
    "service_tier": None,
    "choices": [CHOICE],
    "usage": USAGE,
}

_MISSING = object()
_NOT_OBJECTS = (str, bytes, bytearray, int, float, list, tuple, set, frozenset)


class MissingFieldError(ValueError):
    """A response lacks a field its stream type needs; ``field`` is its path."""

    def __init__(self, field: str, got: object = None) -> None:
        kind = "" if got is None or type(got) is dict else f" (in a {type(got).__name__})"
        super().__init__(f"{field} is required but missing{kind}")
        self.field = field


def _converted(obj: Any) -> dict[str, Any] | None:
    """``obj`` as a dict when it is a mapping, model, struct or dataclass; else None."""
    if isinstance(obj, Mapping):
        return dict(obj)
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        result = dump()
        if isinstance(result, dict):
            return result
    if isinstance(obj, msgspec.Struct):
        built = msgspec.to_builtins(obj)
        if isinstance(built, dict):
            return built
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return None


def _read(value: Any, spec: Any, where: str) -> Any:
    """A field's value: nested plain objects read by their spec, everything else as it is."""
    if spec is None or value is None or type(value) is dict:
        return value
    if isinstance(spec, list):
        if isinstance(value, list | tuple):
            return [_read(item, spec[0], f"{where}[{i}]") for i, item in enumerate(value)]
        return value
    if isinstance(value, _NOT_OBJECTS):
        return value
    return to_dict(value, spec, where)


def to_dict(obj: Any, spec: Spec | None = None, where: str = "full_response") -> dict[str, Any]:
    """One level of a response as a dict (see the module docstring).

    Plain objects are read by attribute for the fields of ``spec`` (those they have); without a
    spec, or for scalars, strings and lists, a ``TypeError`` names ``where`` and the type.
    """
    if type(obj) is dict:
        return obj
    converted = _converted(obj)
    if converted is not None:
        return converted
    if spec is None or obj is None or isinstance(obj, _NOT_OBJECTS):
        raise TypeError(
            f"{where} must be a mapping or an object with attributes (a pydantic model, msgspec "
            f"Struct, dataclass or plain object); got {type(obj).__name__}"
        )
    out: dict[str, Any] = {}
    for name, sub in spec.items():
        value = getattr(obj, name, _MISSING)
        if value is not _MISSING:
            out[name] = _read(value, sub, f"{where}.{name}")
    return out


def require(obj: Mapping[str, Any], field: str, where: str, got: object = None) -> None:
    """Raise :class:`MissingFieldError` for ``where.field`` unless ``obj`` has the field
    (``got``: the object ``obj`` was read from, named in the message)."""
    if field not in obj:
        raise MissingFieldError(f"{where}.{field}", got)


def read_response(full_response: Any) -> dict[str, Any]:
    """A full chat or text completion as a dict with its ``choices`` checked present."""
    full = to_dict(full_response, RESPONSE)
    require(full, "choices", "full_response", full_response)
    return full
