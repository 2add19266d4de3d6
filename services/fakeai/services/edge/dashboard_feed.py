"""The dashboard's live feed, ``GET /v1/dashboard/events``: SSE read from the firehose.

The page is a client of the durable log: it reads this feed with ``fetch()`` and a stream
reader (so it can send ``Authorization``), and redraws from its events. Named events, each
``data:`` one JSON object:

    snapshot  {"now_ms", "streams": [row, ...]}   first: the running streams
    groups    {"now_ms", "groups": [...]}         consumer groups and lag, every GROUPS_S
    streams   {"now_ms", "streams": [row, ...]}   rows changed since the last flush
    end       {"reason": "max_stream_s"}          the feed's time is up: reconnect
    error     {"error": {...}}                    Redis failed, or shutdown: reconnect

Rows and their counting: :mod:`.dashboard_live`. Events carry no ``id:``: a reconnecting page
starts from a fresh snapshot, which is the whole state.

Reading the firehose: plain ``XREAD`` (no consumer group: a view acks nothing, and leaves no
group behind when the page goes away) over every partition, from each partition's newest id,
resolved once *before* the snapshot (concrete ids, never ``$``, which would lose the entries
appended between two reads: https://redis.io/docs/latest/commands/xread/), so no event falls
between the snapshot and the feed; one seen twice is dropped by its seq. The partitions are
read per read set (:meth:`fakeai.streams.log.Link.read_sets`: one on a single server, one per
slot on a cluster), the sets concurrently, each on a dedicated connection
(:meth:`~fakeai.streams.log.Link.reader`: a blocking read never holds a pooled connection,
and a cancelled one is closed, not reused). Each round blocks at most :data:`FLUSH_S`, then
flushes the changed rows.

Tenants: a caller that is not the admin sees only its own streams. The owner of a stream the
snapshot did not read is looked up once (one pipeline per flush, of the streams new in it),
and remembered while the stream runs.

Every open response ends: after ``max_stream_s`` (``end``), at shutdown or when Redis fails
(``error``), and when the client goes (:class:`~.responses.EventStream`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

import msgspec
from redis.exceptions import RedisClusterException, RedisError
from starlette.requests import Request
from starlette.responses import Response

from fakeai.errors import error_body
from fakeai.services.edge.dashboard_live import LiveStreams, Row, snapshot
from fakeai.services.edge.responses import EventStream
from fakeai.services.edge.state import EdgeState, edge_state
from fakeai.services.edge.tenants import OWNER_FIELD, Tenant, can_see, tenant_of
from fakeai.streaming.sse import sse_frame
from fakeai.streams import parse_entry_id
from fakeai.streams.groups import consumer_groups
from fakeai.streams.log import Link, Reader, pack_command
from fakeai.streams.log.firehose import F_BATCH, F_EVENT, payload_field
from fakeai.wire import decode_firehose, decode_firehose_batch, encode

__all__ = ["FLUSH_S", "GROUPS_S", "SNAPSHOT_LIMIT", "feed_endpoint"]

logger = logging.getLogger(__name__)

FLUSH_S = 0.25
"""Longest a firehose read blocks, so the most a row update waits before it is sent."""
GROUPS_S = 2.0
"""How often the consumer groups are read and sent."""
SNAPSHOT_LIMIT = 500
"""Running streams in the first snapshot (newest first)."""
_COUNT = b"1000"
_FAILURES = (RedisError, RedisClusterException, OSError)
_MALFORMED = (KeyError, TypeError, ValueError, msgspec.DecodeError, msgspec.ValidationError)


def sse_event(name: str, obj: Any) -> bytes:
    """One named SSE event with a JSON ``data:`` line."""
    return sse_frame(encode(obj), event=name.encode())


def apply_entry(live: LiveStreams, fields: Any) -> None:
    """Apply every event of one raw firehose entry (a batch ``b`` or one event ``f``)."""
    name, value = payload_field(fields)
    if name == F_BATCH:
        for s in decode_firehose_batch(value):
            for e in s.events:
                live.apply(
                    s.stream_id, s.model, s.created_ms, e.seq, e.kind, e.tokens, e.error_code
                )
    elif name == F_EVENT:
        ev = decode_firehose(value)
        pos = parse_entry_id(ev.entry_id)
        if pos is not None:
            live.apply(ev.stream_id, ev.model, pos.ms, pos.seq, ev.kind, ev.tokens, ev.error_code)


class _Firehose:
    """XREAD rounds over every partition, per read set (module docstring)."""

    def __init__(self, link: Link, last: dict[bytes, bytes]) -> None:
        self._link = link
        self._last = last
        self._sets = link.read_sets(list(last))
        self._readers: dict[int, Reader] = {}

    async def _read(self, i: int, keys: list[bytes]) -> list[Any]:
        reader = self._readers.get(i)
        if reader is None:
            reader = self._readers[i] = await self._link.reader(keys[0])
        block = b"%d" % int(FLUSH_S * 1000)
        packed = pack_command(
            b"XREAD", b"COUNT", _COUNT, b"BLOCK", block, b"STREAMS",
            *keys, *[self._last[k] for k in keys],
        )  # fmt: skip
        reply = await reader.call(packed)
        items = reply.items() if isinstance(reply, dict) else (reply or ())
        out: list[Any] = []
        for key, rows in items:
            if rows:
                self._last[key] = rows[-1][0]
                out.extend(fields for _, fields in rows)
        return out

    async def round(self) -> list[Any]:
        """One read of every set (concurrently); the raw field lists of the new entries."""
        batches = await asyncio.gather(*(self._read(i, s) for i, s in enumerate(self._sets)))
        return [fields for batch in batches for fields in batch]

    async def close(self) -> None:
        readers, self._readers = self._readers, {}
        for reader in readers.values():
            await reader.close()


async def _newest_ids(state: EdgeState) -> dict[bytes, bytes]:
    """Each firehose partition's newest entry id (``0-0`` when empty): where reads start."""
    keys = [k.encode() for k in state.keys.all_events(state.settings.firehose_partitions)]
    pipe = state.redis.pipeline(transaction=False)
    for key in keys:
        pipe.xrevrange(key, count=1)
    replies: list[Any] = await pipe.execute()
    return {key: (rows[0][0] if rows else b"0-0") for key, rows in zip(keys, replies, strict=True)}


class _Visibility:
    """Which streams the caller may see, looked up once per stream (module docstring)."""

    def __init__(self, state: EdgeState, tenant: Tenant, seen: dict[str, bool]) -> None:
        self._state = state
        self._tenant = tenant
        self._seen = seen

    async def filter(self, rows: list[Row]) -> list[Row]:
        if self._tenant.admin:
            return rows
        unknown = [r["id"] for r in rows if r["id"] not in self._seen]
        if unknown:
            pipe = self._state.redis.pipeline(transaction=False)
            for sid in unknown:
                pipe.hget(self._state.keys.meta(sid), OWNER_FIELD)
            for sid, owner in zip(unknown, await pipe.execute(), strict=True):
                text = owner.decode() if isinstance(owner, bytes) else owner
                self._seen[sid] = can_see(self._tenant, text)
        out = [r for r in rows if self._seen[r["id"]]]
        for r in rows:
            if r["status"] != "running":
                self._seen.pop(r["id"], None)
        return out


async def _events(state: EdgeState, tenant: Tenant) -> AsyncGenerator[bytes, None]:
    """The feed's body (module docstring)."""
    ends_at = time.monotonic() + state.settings.max_stream_s
    firehose: _Firehose | None = None
    state.response_started()
    try:
        try:
            firehose = _Firehose(Link(state.redis), await _newest_ids(state))
            live = LiveStreams()
            rows, seen = await snapshot(state.redis, state.keys, tenant, SNAPSHOT_LIMIT)
            live.seed(rows)
            visibility = _Visibility(state, tenant, seen)
            yield sse_event("snapshot", {"now_ms": _now_ms(), "streams": rows})
            groups_due = 0.0
            while True:
                if state.closing.is_set():
                    yield _error("shutting_down", "the server is shutting down; reconnect")
                    return
                now = time.monotonic()
                if now >= ends_at:
                    yield sse_event("end", {"reason": "max_stream_s"})
                    return
                if now >= groups_due:
                    groups_due = now + GROUPS_S
                    groups = await consumer_groups(state.redis, state.keys, state.settings)
                    yield sse_event("groups", {"now_ms": _now_ms(), "groups": groups})
                for fields in await firehose.round():
                    try:
                        apply_entry(live, fields)
                    except _MALFORMED:
                        logger.debug("dashboard feed: skipping a malformed firehose entry")
                changed = await visibility.filter(live.take())
                if changed:
                    yield sse_event("streams", {"now_ms": _now_ms(), "streams": changed})
        except _FAILURES as e:
            logger.warning("dashboard feed: Redis failed: %s", e)
            yield _error("redis_unavailable", "Redis is unavailable; reconnect")
    finally:
        if firehose is not None:
            with contextlib.suppress(Exception):
                await firehose.close()
        state.response_ended()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _error(code: str, message: str) -> bytes:
    return sse_event("error", error_body(message, "server_error", code=code))


async def feed_endpoint(request: Request) -> Response:
    """``GET /v1/dashboard/events`` (module docstring)."""
    state = edge_state(request)
    state.check_open()
    _ = state.redis  # a 503 now, before the 200, when Redis is not attached
    return EventStream(
        _events(state, tenant_of(request.scope)),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        media_type="text/event-stream",
        send_timeout=max(30.0, 4 * state.settings.heartbeat_s),
    )
