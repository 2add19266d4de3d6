"""A stream log entry: its fields, the one parser and the one packer.

An entry of ``Keys.chunks(sid)`` has three fields, written in this order:

``k``  kind (:class:`Kind`): ``c`` data chunk, ``r`` whole non-streaming response, ``d`` done
       (terminal), ``e`` error (terminal)
``d``  payload: the chunk's JSON bytes exactly as clients receive them (serialized once, by the
       producer); for ``d`` a ``DonePayload``, for ``e`` an ``ErrorPayload``
       (:mod:`fakeai.wire.messages`)
``t``  producer append time, integer microseconds since the Unix epoch

Ids are ``<created_ms>-<seq>`` (:func:`fakeai.streams.entry_id`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import hiredis

from fakeai.streaming.sse import sse_frame

__all__ = [
    "F_DATA",
    "F_KIND",
    "F_TIME",
    "TERMINAL_KINDS",
    "Entry",
    "Kind",
    "entry_seq",
    "pack_command",
    "pack_entry",
    "parse_entry",
    "parse_flat",
]


class Kind:
    """Entry kinds (the ``k`` field), one byte each: never JSON-escaped, compared as bytes."""

    CHUNK: Final = b"c"
    RESPONSE: Final = b"r"
    DONE: Final = b"d"
    ERROR: Final = b"e"


F_KIND: Final = b"k"
F_DATA: Final = b"d"
F_TIME: Final = b"t"

TERMINAL_KINDS: Final = frozenset({Kind.DONE, Kind.ERROR})
_DATA_KINDS = frozenset({Kind.CHUNK, Kind.RESPONSE})


@dataclass(slots=True)
class Entry:
    """One log entry, parsed once and shared by every reader of the stream in a process.

    Never modified after construction (it is shared). Not a frozen dataclass: a frozen
    ``__init__`` stores each field through ``object.__setattr__``, which made building an
    entry cost about three times as much, and the edge builds one per delivered chunk.
    """

    id: bytes
    """The entry id ``<created_ms>-<seq>``, as bytes (written to clients as the SSE ``id:``)."""
    seq: int
    kind: bytes
    data: bytes
    t_us: int
    terminal: bool = field(init=False, repr=False, compare=False)
    """A ``done`` or ``error`` entry: the last one of its stream."""
    sse: bytes = field(init=False, repr=False, compare=False)
    """The entry as an SSE event of the OpenAI endpoints (``id:`` + ``data:`` lines, ``[DONE]``
    after a terminal entry), the form in which most entries leave the system: built once here
    and written as-is to every SSE client of the stream."""

    def __post_init__(self) -> None:
        terminal = self.terminal = self.kind in TERMINAL_KINDS
        if not terminal:
            self.sse = sse_frame(self.data, id=self.id)
        elif self.kind == Kind.DONE:
            self.sse = sse_frame(b"[DONE]", id=self.id)
        else:
            self.sse = sse_frame(self.data, id=self.id) + sse_frame(b"[DONE]")

    @property
    def is_data(self) -> bool:
        """A ``c`` or ``r`` entry (one that carries generated tokens)."""
        return self.kind in _DATA_KINDS


def entry_seq(raw_id: bytes) -> int:
    """The ``<seq>`` of an entry id (0 when it has none)."""
    seq = raw_id.partition(b"-")[2]
    return int(seq) if seq else 0


def parse_entry(raw_id: bytes, fields: dict[bytes, bytes]) -> Entry:
    """An :class:`Entry` from a redis-py XRANGE/XREAD item (missing fields default to empty)."""
    t = fields.get(F_TIME)
    return Entry(
        id=raw_id,
        seq=entry_seq(raw_id),
        kind=fields.get(F_KIND, Kind.CHUNK),
        data=fields.get(F_DATA, b""),
        t_us=int(t) if t else 0,
    )


def parse_flat(raw_id: bytes, flat: list[bytes]) -> Entry:
    """An :class:`Entry` from a raw reply item: the id and the flat field list
    ``[name, value, ...]`` as Redis sends it (raw readers skip redis-py's reply callback, which
    would build a dict per entry only to take three fields out of it)."""
    if len(flat) == 6 and flat[0] == F_KIND and flat[2] == F_DATA and flat[4] == F_TIME and flat[5]:
        # The order the packer writes (k, d, t): no search.
        return Entry(raw_id, int(raw_id.partition(b"-")[2]), flat[1], flat[3], int(flat[5]))
    kind, data, t = Kind.CHUNK, b"", b""
    for i in range(0, len(flat) - 1, 2):
        name = flat[i]
        if name == F_KIND:
            kind = flat[i + 1]
        elif name == F_DATA:
            data = flat[i + 1]
        elif name == F_TIME:
            t = flat[i + 1]
    return Entry(id=raw_id, seq=entry_seq(raw_id), kind=kind, data=data, t_us=int(t) if t else 0)


def pack_command(*args: bytes) -> bytes:
    """One command in the Redis protocol (hiredis's packer: the bytes redis-py sends, at
    about half the cost of a Python encoder; its type stub declares one-element tuples)."""
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]
    return packed


def pack_entry(key: bytes, entry_id: bytes, kind: bytes, data: bytes, t_us: int) -> bytes:
    """``XADD <key> <entry_id> k <kind> d <data> t <t_us>`` in the Redis protocol.

    An explicit id: Redis rejects an id not above the log's last one, so an entry sent again
    (after a producer failover, or a retried write) is never appended twice
    (https://redis.io/docs/latest/commands/xadd/).
    """
    return pack_command(b"XADD", key, entry_id, F_KIND, kind, F_DATA, data, F_TIME, b"%d" % t_us)
