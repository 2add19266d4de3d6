"""Stream ids and positions in a stream's log: pure functions, no I/O.

A stream id is ``<prefix><created_ms as 11 hex digits><24 random hex digits>``: 96 random bits
make it unguessable, and the embedded creation time lets the edge tell an expired stream (410)
from one that never existed (404) after its keys are gone. The prefix names the stream's
family (:func:`family_of`), which says what one entry of its log holds:

==================  ============  =====================================================
prefix              family        one data entry of the log
==================  ============  =====================================================
``chatcmpl-``       chat          a ``chat.completion.chunk`` (audio deltas included)
``cmpl-``           completion    a ``text_completion`` chunk
``resp_``           responses     a Responses API event (the id is the response id)
``rtresp_``         realtime      a Realtime API server event of one response
``speech_``         speech        a ``speech.audio.delta`` / ``speech.audio.done`` event
``trsc_``           transcription a ``transcript.text.delta`` / ``.done`` event
``img_``            image         an ``image_generation.partial_image`` / ``.completed`` event
==================  ============  =====================================================

Every family but chat and completion holds typed events (a JSON object whose first member is
``type``): :func:`is_event_stream`.

A position is a Redis stream entry id ``<ms>-<seq>``. Within one stream every id has the same
``ms`` (the stream's ``created_ms``) and ``seq`` counts chunks from 1; ``<ms>-0`` is the
position before the first chunk.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "EntryId",
    "ResumeVerdict",
    "created_ms_of",
    "decide_resume",
    "entry_id",
    "entry_of_event",
    "event_id",
    "family_of",
    "is_event_stream",
    "is_response_id",
    "new_stream_id",
    "parse_entry_id",
]

_PREFIXES = {
    "chat": "chatcmpl-",
    "completion": "cmpl-",
    "responses": "resp_",
    "realtime": "rtresp_",
    "speech": "speech_",
    "transcription": "trsc_",
    "image": "img_",
}
_FAMILY_RE = re.compile("^(" + "|".join(map(re.escape, _PREFIXES.values())) + ")")
_FAMILIES = {prefix: family for family, prefix in _PREFIXES.items()}
_SID_RE = re.compile(_FAMILY_RE.pattern + r"([0-9a-f]{11})([0-9a-f]{24})$")
_ENTRY_RE = re.compile(r"^([0-9]{1,20})-([0-9]{1,20})$")
_U64 = (1 << 64) - 1
"""Redis stream ids are two unsigned 64-bit integers."""


def new_stream_id(kind: str, created_ms: int) -> str:
    """A fresh stream id of family ``kind`` (module docstring); an unknown kind is a
    completion's (``cmpl-…``)."""
    prefix = _PREFIXES.get(kind, "cmpl-")
    return f"{prefix}{created_ms:011x}{secrets.token_hex(12)}"


def family_of(stream_id: str) -> str | None:
    """The family of a stream id (module docstring), or None when the prefix is not ours."""
    m = _FAMILY_RE.match(stream_id)
    return _FAMILIES[m.group(1)] if m else None


def is_response_id(stream_id: str) -> bool:
    """The stream is a Responses API response: each entry of its log holds one Responses
    API event."""
    return stream_id.startswith("resp_")


def is_event_stream(stream_id: str) -> bool:
    """Each data entry of the stream's log is a typed event (``{"type": ...}``): the edge
    names its SSE events by that type and sends no ``data: [DONE]``."""
    return family_of(stream_id) not in (None, "chat", "completion")


def created_ms_of(stream_id: str) -> int | None:
    """The creation time embedded in a stream id, or None when the id is not one of ours."""
    m = _SID_RE.match(stream_id)
    return int(m.group(2), 16) if m else None


@dataclass(frozen=True, slots=True, order=True)
class EntryId:
    ms: int
    seq: int

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


def entry_id(created_ms: int, seq: int) -> str:
    return f"{created_ms}-{seq}"


_EVENT_PREFIX = "event_"


def event_id(created_ms: int, seq: int) -> str:
    """The ``event_id`` of a logged Realtime API event: ``event_<entry id>``, so the event
    names its place in the log and a client can resume after it."""
    return f"{_EVENT_PREFIX}{created_ms}-{seq}"


def entry_of_event(event_id: str) -> str:
    """The entry id a logged event's ``event_id`` names (:func:`event_id`); the text itself
    when it has no ``event_`` prefix (an entry id already)."""
    return event_id.removeprefix(_EVENT_PREFIX)


def parse_entry_id(raw: str | bytes) -> EntryId | None:
    """Parse ``<ms>-<seq>`` (ASCII digits, each part a 64-bit unsigned integer, as Redis
    stream ids are); None when malformed, including bytes that are not UTF-8."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            return None
    else:
        text = raw
    m = _ENTRY_RE.match(text.strip())
    if not m:
        return None
    ms, seq = int(m.group(1)), int(m.group(2))
    if ms > _U64 or seq > _U64:
        return None
    return EntryId(ms, seq)


class ResumeVerdict(Enum):
    OK = "ok"
    """Resume after the given id: every later chunk exactly once."""
    MALFORMED = "malformed"
    """Not an entry id (400)."""
    FOREIGN = "foreign"
    """An id of another stream (400)."""
    BEYOND = "beyond"
    """Past the last entry of a finished stream (400)."""
    EXPIRED = "expired"
    """The stream is gone (410)."""


def decide_resume(
    raw_last_id: str | None,
    *,
    created_ms: int,
    exists: bool,
    last_seq: int | None,
    finished: bool,
) -> tuple[ResumeVerdict, EntryId]:
    """Can a client resume this stream after ``raw_last_id``?

    ``last_seq`` is the seq of the newest entry in the log (None when the log is empty) and
    ``finished`` says whether that entry is terminal. Loss is never silent: a stream whose log
    is gone is EXPIRED, not "start from scratch".
    """
    start = EntryId(created_ms, 0)
    if not exists:
        return ResumeVerdict.EXPIRED, start
    if raw_last_id is None or raw_last_id == "":
        return ResumeVerdict.OK, start
    pos = parse_entry_id(raw_last_id)
    if pos is None:
        return ResumeVerdict.MALFORMED, start
    if pos.ms != created_ms:
        return ResumeVerdict.FOREIGN, start
    if finished and last_seq is not None and pos.seq > last_seq:
        return ResumeVerdict.BEYOND, start
    return ResumeVerdict.OK, pos
