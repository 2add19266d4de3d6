"""``fakeai-streams tail``: print every chunk of every stream, live, through a consumer group.

Each run reads all firehose partitions through its own group, so any number of observers (and
the ``metrics`` group) see every entry independently. Without ``group`` the run creates a fresh
group at each partition's current last id (``$``: only new entries) and destroys it at exit
(however the run ends: a limit, ``stop`` set by SIGINT or SIGTERM, an error); a named group is
created once (at ``$``) and resumes where it left off, acking what it printed.

Reads go per read set (:meth:`fakeai.streams.log.Link.read_sets`): one XREADGROUP over every
partition on a single server; on a Redis Cluster, where one command may only name keys of one
slot, one XREADGROUP per partition, the sets read concurrently. This is not a hot path, so the
reads are redis-py's ordinary ``xreadgroup`` (short blocks, so ``stop`` is seen within
:data:`BLOCK_MS`); entries are decoded by :func:`fakeai.streams.log.firehose.firehose_events`.

An entry is a batch of many streams' events (or one event, the older format): every event is
printed, in entry order. ``limit`` counts events; an entry whose events were not all printed
when the limit was reached stays unacked, so the next run of a named group prints it again
(at-least-once, like the group itself).

Output: ``text`` prints ``<stream_id> <model> <text>`` per chunk and ``<stream_id> <model>
[done|error <code>]`` per terminal entry; ``jsonl`` prints one JSON object per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import uuid
from typing import Any, Literal, TextIO

import msgspec

from fakeai.config import Settings
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient, check_layout, connect
from fakeai.streams.log import Link, ensure_group
from fakeai.streams.log.firehose import firehose_events
from fakeai.wire import FirehoseEvent

__all__ = ["BLOCK_MS", "chunk_text", "format_event", "run"]

logger = logging.getLogger(__name__)

Format = Literal["text", "jsonl"]
_FORMATS = ("text", "jsonl")
_json = msgspec.json.Decoder()
_enc = msgspec.json.Encoder()
_MALFORMED = (KeyError, TypeError, msgspec.DecodeError, msgspec.ValidationError)

BLOCK_MS = 200
"""How long one read blocks: the longest a run takes to see ``stop``."""
COUNT = 500


def chunk_text(data: bytes | None) -> str:
    """The text a chunk carries: chat ``delta.content``, completion ``text`` or a whole
    response's ``message.content``; empty when there is none."""
    if not data:
        return ""
    try:
        obj = _json.decode(data)
    except msgspec.DecodeError:
        return ""
    parts: list[str] = []
    for choice in obj.get("choices") or () if isinstance(obj, dict) else ():
        if not isinstance(choice, dict):
            continue
        for src in (choice.get("delta"), choice.get("message")):
            if isinstance(src, dict) and isinstance(src.get("content"), str):
                parts.append(src["content"])
        if isinstance(choice.get("text"), str):
            parts.append(choice["text"])
    return "".join(parts)


def format_event(ev: FirehoseEvent, fmt: Format) -> str:
    """One output line (without newline) for an event."""
    data = ev.payload
    if fmt == "jsonl":
        obj: dict[str, Any] = {
            "stream_id": ev.stream_id,
            "entry_id": ev.entry_id,
            "kind": ev.kind,
            "model": ev.model,
            "accepted_at_us": ev.accepted_at_us,
            "emitted_at_us": ev.emitted_at_us,
            "tokens": ev.tokens,
            "data": msgspec.Raw(data) if data else None,
            "error_code": ev.error_code,
        }
        return _enc.encode(obj).decode()
    if ev.kind == "d":
        return f"{ev.stream_id} {ev.model} [done]"
    if ev.kind == "e":
        return f"{ev.stream_id} {ev.model} [error {ev.error_code or 'unknown'}]"
    return f"{ev.stream_id} {ev.model} {chunk_text(data)}"


async def run(
    settings: Settings,
    *,
    group: str | None = None,
    stream_id: str | None = None,
    model: str | None = None,
    fmt: Format = "text",
    out: TextIO | None = None,
    stop: asyncio.Event | None = None,
    limit: int | None = None,
    ready: asyncio.Event | None = None,
) -> int:
    """Print firehose events until ``stop``, ``limit`` events printed, or cancellation.

    ``ready`` is set once the groups exist (entries appended after that are seen). Returns the
    number of events printed.

    Raises:
        LayoutMismatch: the Redis holds another key layout (``fakeai-streams migrate``).
    """
    if fmt not in _FORMATS:
        raise ValueError(f"fmt must be one of {_FORMATS}, got {fmt!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit!r}")
    if not settings.redis_url:
        raise ValueError("tail needs a Redis: set FAKEAI_REDIS_URL or pass --redis-url")
    keys = Keys(settings.key_prefix)
    partitions = keys.all_events(settings.firehose_partitions)
    fresh = group is None
    name = group or f"tail-{uuid.uuid4().hex[:12]}"
    # A named group uses one consumer name, so a new run first re-reads what an earlier run
    # was given but did not ack (its pending entries, from id 0), then goes on with new ones.
    consumer = "tail" if not fresh else f"tail-{uuid.uuid4().hex[:8]}"
    printer = _Printer(out or sys.stdout, fmt, stream_id, model, limit)
    redis = await connect(settings.redis_url, cluster=settings.redis_cluster)
    try:
        await check_layout(redis, keys)
        await ensure_group(redis, partitions, name, "$")
        if ready is not None:
            ready.set()
        sets = Link(redis).read_sets([k.encode() for k in partitions])
        reader = _SetReader(redis, name, consumer, printer, stop or asyncio.Event(), fresh)
        try:
            async with asyncio.TaskGroup() as tasks:
                for keys_of_set in sets:
                    tasks.create_task(reader.run([k.decode() for k in keys_of_set]))
        except BaseExceptionGroup as group_error:
            # One read set failed (the others were cancelled): raise its error as it is, so
            # callers catch a plain redis-py error, not a group.
            raise group_error.exceptions[0] from None
    finally:
        if fresh:
            with contextlib.suppress(Exception):
                await asyncio.shield(_destroy(redis, partitions, name))
        await redis.aclose()
    return printer.printed


class _Printer:
    """Filters and prints events; counts them against the limit (shared by every read set)."""

    def __init__(
        self,
        out: TextIO,
        fmt: Format,
        stream_id: str | None,
        model: str | None,
        limit: int | None,
    ) -> None:
        self.out, self.fmt, self.stream_id, self.model, self.limit = (
            out,
            fmt,
            stream_id,
            model,
            limit,
        )
        self.printed = 0

    @property
    def full(self) -> bool:
        return self.limit is not None and self.printed >= self.limit

    def entry(self, events: list[FirehoseEvent]) -> bool:
        """Print an entry's matching events; False when the limit cut it short (leave it
        unacked: the next run of a named group prints it again, at-least-once)."""
        for ev in events:
            if (self.stream_id and ev.stream_id != self.stream_id) or (
                self.model and ev.model != self.model
            ):
                continue
            if self.full:
                return False
            self.out.write(format_event(ev, self.fmt) + "\n")
            self.printed += 1
        return True


class _SetReader:
    """One read loop per read set: XREADGROUP, print, XACK what was printed whole."""

    def __init__(
        self,
        redis: RedisClient,
        group: str,
        consumer: str,
        printer: _Printer,
        stop: asyncio.Event,
        fresh: bool,
    ) -> None:
        self.redis, self.group, self.consumer = redis, group, consumer
        self.printer, self.stop, self.fresh = printer, stop, fresh

    async def run(self, keys: list[str]) -> None:
        pos: dict[Any, Any] = {k: (">" if self.fresh else "0-0") for k in keys}
        printer = self.printer
        while not self.stop.is_set() and not printer.full:
            history = any(p != ">" for p in pos.values())
            reply: Any = await self.redis.xreadgroup(
                self.group, self.consumer, pos, count=COUNT, block=None if history else BLOCK_MS
            )
            items = reply.items() if isinstance(reply, dict) else (reply or ())
            acks: dict[str, list[Any]] = {}
            for raw_key, entries in items:
                key = _s(raw_key)
                if pos[key] != ">":
                    # Pending history: go on after its last entry; an empty page ends it.
                    pos[key] = ">" if not entries else _s(entries[-1][0])
                for eid, fields in entries:
                    if printer.full:
                        break  # unacked: a named group delivers the rest to its next run
                    try:
                        events = firehose_events(fields)
                    except _MALFORMED:
                        logger.warning("skipping malformed firehose entry %r", eid)
                        acks.setdefault(key, []).append(eid)
                        continue
                    if printer.entry(events):
                        acks.setdefault(key, []).append(eid)
            if acks:
                pipe = self.redis.pipeline(transaction=False)
                for key, ids in acks.items():
                    pipe.xack(key, self.group, *ids)
                await pipe.execute()
            printer.out.flush()


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


async def _destroy(redis: RedisClient, partitions: list[str], group: str) -> None:
    pipe = redis.pipeline(transaction=False)
    for key in partitions:
        pipe.xgroup_destroy(key, group)
    await pipe.execute(raise_on_error=False)
