"""Opening a stream's log for a reader: one round trip decides, then XRANGE or the hub reads.

:func:`snapshot` reads in one round trip (one pipeline, one slot: the stream's bucket) what the
decision needs: the meta hash, whether the log exists, its newest entry and length, and the
first page of entries after the client's position. :func:`open_log` decides with the pure
:func:`fakeai.streams.decide_resume` before anything is sent (so a Redis that fails there is a
503, never an error inside a 200), then opens the reader: XRANGE alone for a finished log (at
a replay ``pace`` if asked), the hub for a running one (which ends the reading with a
``timeout`` error once ``max_stream_s`` has passed since the stream's creation without a
terminal entry). Any transport serves what it opens: SSE, JSON Lines and text over HTTP
(:mod:`.stream_routes`), the realtime WebSocket (:mod:`.realtime`).

404 or 410: an id that is not of our form, or whose keys are not in Redis, or that belongs to
another tenant, is 404 ``stream_not_found`` unless the creation time embedded in the id
(:func:`fakeai.streams.created_ms_of`) is older than the retention: then it may have existed
and expired, and it is 410 ``stream_expired``. Malformed or foreign positions are a 400, as is
one past the end of a finished stream (naming its last event id).
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from fakeai.errors import BadRequest, NotFound, StreamExpired
from fakeai.services.edge.reader import live_until, read_finished, read_live
from fakeai.services.edge.state import EdgeState
from fakeai.services.edge.tenants import Tenant, visible
from fakeai.streams import EntryId, ResumeVerdict, created_ms_of, decide_resume, parse_entry_id
from fakeai.streams.log import PAGE, Entry, parse_entry
from fakeai.streams.meta import StreamMeta

__all__ = [
    "OpenedLog",
    "Snapshot",
    "created_ms_or_404",
    "follow_live",
    "gone",
    "open_log",
    "snapshot",
]


def created_ms_or_404(stream_id: str) -> int:
    created = created_ms_of(stream_id)
    if created is None:
        raise NotFound(
            f"stream {stream_id!r} not found", param="stream_id", code="stream_not_found"
        )
    return created


def gone(state: EdgeState, stream_id: str, created_ms: int) -> Exception:
    """404 or 410 for a stream whose keys are not in Redis."""
    retention = state.settings.retention_s
    if retention and time.time() * 1000 > created_ms + retention * 1000:
        return StreamExpired(
            f"stream {stream_id} has expired (streams are kept {retention} s)",
            param="stream_id",
        )
    return NotFound(f"stream {stream_id} not found", param="stream_id", code="stream_not_found")


class Snapshot:
    """What one round trip tells about a stream (:func:`_snapshot`)."""

    __slots__ = ("exists", "last", "length", "meta", "page")

    def __init__(
        self,
        meta: dict[bytes, bytes],
        exists: bool,
        last: Entry | None,
        length: int,
        page: list[Entry] | None,
    ) -> None:
        self.meta = meta
        self.exists = exists
        """The log or the meta hash is there."""
        self.last = last
        """The newest entry of the log."""
        self.length = length
        self.page = page
        """The first XRANGE page after the position asked for (None: not asked)."""

    @property
    def finished(self) -> bool:
        return self.last is not None and self.last.terminal


async def snapshot(state: EdgeState, stream_id: str, after: str | None = None) -> Snapshot:
    """Meta hash, log exists, newest entry, log length and, with ``after``, the first page of
    entries after it: one round trip (one slot: the stream's bucket)."""
    key = state.keys.chunks(stream_id)
    pipe = state.redis.pipeline(transaction=False)
    pipe.hgetall(state.keys.meta(stream_id))
    pipe.exists(key)
    pipe.xrevrange(key, max="+", min="-", count=1)
    pipe.xlen(key)
    if after is not None:
        pipe.xrange(key, min=f"({after}", max="+", count=PAGE)
    meta, exists, rows, length, *more = await pipe.execute()
    last = parse_entry(*rows[0]) if rows else None
    page = [parse_entry(i, f) for i, f in more[0]] if more else None
    return Snapshot(meta, bool(meta) or bool(exists), last, int(length), page)


@dataclass(slots=True)
class OpenedLog:
    """A stream's log, opened for a reader after a position (:func:`open_log`)."""

    entries: AsyncGenerator[list[Entry], None]
    release: Callable[[], None]
    """Frees what the reader holds (a hub subscription when the stream runs); run it however
    the reading ends, even if ``entries`` never started."""
    meta: StreamMeta
    position: EntryId
    """Where the reader starts (after this entry)."""


def _nothing() -> None:
    pass


async def open_log(
    state: EdgeState,
    sid: str,
    raw_last: str | None,
    tenant: Tenant,
    *,
    pace: float | None = None,
    heartbeat_s: float | None = None,
    param: str = "last_event_id",
    position: str | None = None,
) -> OpenedLog:
    """The entries of stream ``sid`` after the event id ``raw_last`` (from its start when
    None), for ``tenant``: decided in one round trip (module docstring), then read by XRANGE
    (a finished stream, at ``pace``) or through the hub (a running one). 404/410 for a stream
    that is not there or not the tenant's; 400 for a position it cannot resume from."""
    created_ms = created_ms_or_404(sid)
    # The first page after the client's position comes with the snapshot (module docstring).
    hint = parse_entry_id(raw_last) if raw_last else None
    after_seq = hint.seq if hint is not None and hint.ms == created_ms else 0
    snap = await snapshot(state, sid, after=f"{created_ms}-{after_seq}")
    last, finished = snap.last, snap.finished
    verdict, pos = decide_resume(
        raw_last,
        created_ms=created_ms,
        exists=snap.exists and visible(tenant, snap.meta),
        last_seq=last.seq if last else None,
        finished=finished,
    )
    if verdict is ResumeVerdict.EXPIRED:
        raise gone(state, sid, created_ms)
    if verdict is not ResumeVerdict.OK:
        reason = {
            ResumeVerdict.MALFORMED: "is not an event id of the form <ms>-<seq>",
            ResumeVerdict.FOREIGN: "belongs to another stream",
            ResumeVerdict.BEYOND: "is past the end of this finished stream, whose last "
            f"event id is {last.id.decode() if last else None}",
        }[verdict]
        shown = f"{param} {position!r}" if position is not None else f"Last-Event-ID {raw_last!r}"
        raise BadRequest(f"{shown} {reason}", param=param, code="invalid_event_id")
    page = snap.page if pos.seq == after_seq else None
    meta = StreamMeta.from_hash(snap.meta)
    key = state.keys.chunks(sid)
    if finished:
        base = int(meta.accepted_at * 1e6) if meta.accepted_at and pos.seq == 0 else None
        entries = read_finished(
            state.redis,
            key,
            created_ms=created_ms,
            after_seq=pos.seq,
            pace=pace,
            base_t_us=base,
            closing=state.closing,
            heartbeat_s=heartbeat_s,
            first_page=page,
        )
        return OpenedLog(entries, _nothing, meta, pos)
    start = last.id.decode() if last is not None else f"{created_ms}-0"
    entries, release = follow_live(
        state, key, created_ms, start, pos.seq, heartbeat_s=heartbeat_s, first_page=page
    )
    return OpenedLog(entries, release, meta, pos)


def follow_live(
    state: EdgeState,
    key: str,
    created_ms: int,
    start: str,
    after_seq: int,
    *,
    heartbeat_s: float | None,
    first_page: list[Entry] | None = None,
) -> tuple[AsyncGenerator[list[Entry], None], Callable[[], None]]:
    """The live read of a stream's log ``key`` after entry ``after_seq``: subscribed on the
    hub from entry id ``start`` (before anything is published, for a new stream: the log is
    the rendezvous), bounded by ``max_stream_s``. Also returns what releases the
    subscription: the response runs it however it ends, even if the log was never read."""
    sub = state.hub.subscribe(key, start, state.settings.client_buffer)
    entries = read_live(
        state.redis,
        state.hub,
        sub,
        key=key,
        created_ms=created_ms,
        after_seq=after_seq,
        heartbeat_s=heartbeat_s,
        ends_at=live_until(created_ms, state.settings.max_stream_s),
        first_page=first_page,
    )
    return entries, functools.partial(state.hub.unsubscribe, sub)
