"""A small, fast incremental SSE parser and the one-field chunk decoder the bench needs.

The parser follows the WHATWG event-stream interpretation
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation)
with two deliberate simplifications, because a load generator must not be the bottleneck:

- lines end with ``\\n`` or ``\\r\\n`` (a lone ``\\r`` is not a line end; OpenAI-compatible
  servers never send one);
- ``event:`` and ``retry:`` fields are ignored (OpenAI chat/completions streams carry no event
  names; a Responses API event repeats its name as the ``type`` of its data).

An event with no ``data:`` line is not dispatched, but its ``id:`` still sets
:attr:`SSEParser.last_event_id`, exactly as the spec's "last event ID buffer" does: that is how
a priming event (``id:`` + ``retry:`` only) tells a client where it resumes from.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

__all__ = ["DONE", "ChunkInfo", "EventInfo", "SSEEvent", "SSEParser", "chunk_info", "event_info"]

DONE = b"[DONE]"


class SSEEvent(NamedTuple):
    """One dispatched event: its data, and the ``id:`` it carried itself (None when the event
    had no ``id:`` line, such as an edge's error frame)."""

    data: bytes
    id: bytes | None


class SSEParser:
    """Feed raw response bytes; get back the events completed by them."""

    __slots__ = ("_buf", "_data", "_id", "last_event_id")

    def __init__(self) -> None:
        self._buf = b""
        self._data: bytes | None = None
        self._id: bytes | None = None
        self.last_event_id: bytes | None = None
        """The spec's last event ID: what ``Last-Event-ID`` should carry on a reconnect."""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf + chunk if self._buf else chunk
        events: list[SSEEvent] = []
        start = 0
        find = buf.find
        while True:
            nl = find(b"\n", start)
            if nl < 0:
                break
            line = buf[start:nl]
            start = nl + 1
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                if self._id is not None:
                    self.last_event_id = self._id
                if self._data is not None:
                    events.append(SSEEvent(self._data, self._id))
                self._data = None
                self._id = None
            elif line[:5] == b"data:":
                value = line[6:] if line[5:6] == b" " else line[5:]
                self._data = value if self._data is None else self._data + b"\n" + value
            elif line[:3] == b"id:":
                value = line[4:] if line[3:4] == b" " else line[3:]
                # An id containing NUL is ignored (spec, "id" field).
                if b"\0" not in value:
                    self._id = value
            # ":" comments (heartbeats), "event:" and "retry:" need nothing from us.
        self._buf = buf[start:]
        return events

    @property
    def pending(self) -> bool:
        """True when bytes of an unfinished event are buffered (a cut-off stream)."""
        return bool(self._buf) or self._data is not None


class _Delta(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None


class _Choice(msgspec.Struct):
    text: str | None = None
    delta: _Delta | None = None


class _Usage(msgspec.Struct):
    completion_tokens: int | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = []
    usage: _Usage | None = None
    # Raw: the error body is neither decoded nor validated, only noticed ("Raw | None" is not
    # a valid msgspec union, so absence is an empty Raw).
    error: msgspec.Raw = msgspec.Raw()


_decode_chunk = msgspec.json.Decoder(_Chunk).decode


class ChunkInfo(NamedTuple):
    """What the bench reads from one data event."""

    text: str
    """The content it carries (chat ``delta.content`` / ``reasoning_content``, completions
    ``text``); "" for the role chunk, the finish chunk and a usage chunk."""
    completion_tokens: int | None
    """``usage.completion_tokens`` when the chunk carries usage."""
    error: bool
    """The event is an error frame (``{"error": {...}}``)."""
    valid: bool
    """The data parsed as a JSON object."""

    @property
    def sequence(self) -> int | None:
        """A chunk has no ``sequence_number`` (:class:`EventInfo` has)."""
        return None

    @property
    def end(self) -> bool:
        """A chunk never ends its stream: ``[DONE]`` does."""
        return False


class EventInfo(NamedTuple):
    """What the bench reads from one Responses API event (:func:`event_info`)."""

    text: str
    """The text of a ``response.output_text.delta``; "" for every other event."""
    completion_tokens: int | None
    """``response.usage.output_tokens`` of the final event."""
    error: bool
    """An ``error`` or ``response.failed`` event."""
    valid: bool
    sequence: int | None
    """The event's ``sequence_number``."""
    end: bool
    """The stream's last event: ``response.completed`` or ``response.incomplete``."""


def chunk_info(data: bytes) -> ChunkInfo:
    """Decode only the fields the bench needs (msgspec skips the rest without building it)."""
    try:
        chunk = _decode_chunk(data)
    except msgspec.DecodeError:
        return ChunkInfo("", None, False, False)
    parts: list[str] = []
    for c in chunk.choices:
        if c.text:
            parts.append(c.text)
        d = c.delta
        if d is not None:
            if d.content:
                parts.append(d.content)
            if d.reasoning_content:
                parts.append(d.reasoning_content)
    tokens = chunk.usage.completion_tokens if chunk.usage is not None else None
    text = parts[0] if len(parts) == 1 else "".join(parts)
    return ChunkInfo(text, tokens, len(chunk.error) > 0, True)


class _ResponseUsage(msgspec.Struct):
    output_tokens: int | None = None


class _Response(msgspec.Struct):
    usage: _ResponseUsage | None = None


class _Event(msgspec.Struct):
    type: str = ""
    sequence_number: int | None = None
    delta: str | None = None
    response: _Response | None = None


_decode_event = msgspec.json.Decoder(_Event).decode
_TEXT_DELTA = "response.output_text.delta"
_ENDS = frozenset({"response.completed", "response.incomplete"})
_FAILS = frozenset({"error", "response.failed"})


def event_info(data: bytes) -> EventInfo:
    """:func:`chunk_info` of a Responses API event: the text of ``response.output_text.delta``
    (the tokens TTFT and ITL time), ``output_tokens`` of the final response, an ``error`` or
    ``response.failed`` event as an error."""
    try:
        ev = _decode_event(data)
    except msgspec.DecodeError:
        return EventInfo("", None, False, False, None, False)
    kind = ev.type
    text = (ev.delta or "") if kind == _TEXT_DELTA else ""
    end = kind in _ENDS
    usage = ev.response.usage if end and ev.response is not None else None
    tokens = usage.output_tokens if usage is not None else None
    return EventInfo(text, tokens, kind in _FAILS, True, ev.sequence_number, end)
