"""A stream's log as the edge sees it: parsed entries, paged reads, and interruptions.

An entry of ``Keys.chunks(sid)`` has the fields ``k`` (kind), ``d`` (payload, the chunk JSON as
clients receive it) and ``t`` (producer append time, µs); see :mod:`fakeai.wire.messages`.
The edge never re-encodes ``d``: it writes those bytes to every client as they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aredis

from fakeai.streams.log import PAGE, xrange_pages
from fakeai.wire import KIND_DONE, KIND_ERROR, ErrorBody

__all__ = [
    "PAGE",
    "Entry",
    "StreamInterrupted",
    "iter_range",
    "last_entry",
    "parse_entry",
    "parse_flat",
]


_TERMINAL = (KIND_DONE, KIND_ERROR)


@dataclass(slots=True)
class Entry:
    """One log entry, parsed once and shared by every subscriber of the stream.

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
    """The entry's SSE event (``id:`` + ``data:`` lines, no ``retry:``), built once here and
    written as-is to every SSE client of the stream: with N clients on one stream, formatting
    per client would build the same bytes N times."""

    def __post_init__(self) -> None:
        terminal = self.terminal = self.kind in _TERMINAL
        if not terminal:
            self.sse = b"id: " + self.id + b"\ndata: " + self.data + b"\n\n"
        elif self.kind == KIND_DONE:
            self.sse = b"id: " + self.id + b"\ndata: [DONE]\n\n"
        else:
            self.sse = b"id: " + self.id + b"\ndata: " + self.data + b"\n\ndata: [DONE]\n\n"


def parse_entry(raw_id: bytes, fields: dict[bytes, bytes]) -> Entry:
    """An :class:`Entry` from a redis-py XRANGE/XREAD item (missing fields default to empty)."""
    _, _, seq = raw_id.partition(b"-")
    t = fields.get(b"t")
    return Entry(
        id=raw_id,
        seq=int(seq),
        kind=fields.get(b"k", b"c"),
        data=fields.get(b"d", b""),
        t_us=int(t) if t else 0,
    )


def parse_flat(raw_id: bytes, flat: list[bytes]) -> Entry:
    """An :class:`Entry` from a raw XREAD reply item: the id and the flat field list
    ``[name, value, ...]`` as Redis sends it (the hub skips redis-py's reply callback, which
    would build a dict per entry only for us to take three fields out of it)."""
    if len(flat) == 6 and flat[0] == b"k" and flat[2] == b"d" and flat[4] == b"t" and flat[5]:
        # The order the producer writes (``k``, ``d``, ``t``): no search.
        return Entry(raw_id, int(raw_id.partition(b"-")[2]), flat[1], flat[3], int(flat[5]))
    kind, data, t = b"c", b"", b""
    for i in range(0, len(flat) - 1, 2):
        name = flat[i]
        if name == b"k":
            kind = flat[i + 1]
        elif name == b"d":
            data = flat[i + 1]
        elif name == b"t":
            t = flat[i + 1]
    return Entry(
        id=raw_id,
        seq=int(raw_id.partition(b"-")[2]),
        kind=kind,
        data=data,
        t_us=int(t) if t else 0,
    )


class StreamInterrupted(Exception):
    """The edge stopped serving a stream before its end; the client should resume.

    The stream itself goes on in Redis: ``code`` says why this connection ended
    (``slow_consumer``, ``redis_unavailable``, ``edge_shutdown``) and the message tells the
    client to reconnect with ``Last-Event-ID``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def body(self) -> ErrorBody:
        return ErrorBody(message=self.message, type="server_error", code=self.code)


async def iter_range(
    redis: aredis.Redis, key: str, after_seq: int, created_ms: int
) -> AsyncIterator[list[Entry]]:
    """Pages of the entries after ``<created_ms>-<after_seq>`` (exclusive start), in order."""
    async for page in xrange_pages(redis, key, f"{created_ms}-{after_seq}"):
        yield [parse_entry(i, f) for i, f in page]


async def last_entry(redis: aredis.Redis, key: str) -> Entry | None:
    """The newest entry of a log, or None when the log is empty or missing."""
    rows: Any = await redis.xrevrange(key, max="+", min="-", count=1)
    return parse_entry(*rows[0]) if rows else None
