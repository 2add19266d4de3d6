"""``fakeai-streams tail``: print every chunk of every stream, live, through a consumer group.

Each run reads all firehose partitions through its own group, so any number of observers (and
the ``metrics`` group) see every entry independently. Without ``group`` the run creates a fresh
group at each partition's current last id (``$``: only new entries) and destroys it at exit; a
named group is created once (at ``$``) and resumes where it left off, acking what it printed.

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
import redis.asyncio as aredis
from redis.exceptions import ResponseError

from fakeai.config import Settings
from fakeai.streams import Keys
from fakeai.wire import FirehoseEvent, firehose_events

__all__ = ["chunk_text", "format_event", "run"]

logger = logging.getLogger(__name__)

Format = Literal["text", "jsonl"]
_FORMATS = ("text", "jsonl")
_json = msgspec.json.Decoder()
_enc = msgspec.json.Encoder()


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
    """
    if fmt not in _FORMATS:
        raise ValueError(f"fmt must be one of {_FORMATS}, got {fmt!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit!r}")
    if not settings.redis_url:
        raise ValueError("tail needs a Redis: set FAKEAI_REDIS_URL or pass --redis-url")
    out = out or sys.stdout
    stop = stop or asyncio.Event()
    keys = Keys(settings.key_prefix)
    partitions = keys.all_events(settings.firehose_partitions)
    fresh = group is None
    name = group or f"tail-{uuid.uuid4().hex[:12]}"
    # A named group uses one consumer name, so a new run first re-reads what an earlier run
    # was given but did not ack (its pending entries, from id 0), then goes on with new ones.
    consumer = "tail" if not fresh else f"tail-{uuid.uuid4().hex[:8]}"
    pos: dict[Any, Any] = {k: (">" if fresh else "0-0") for k in partitions}
    redis = aredis.Redis.from_url(settings.redis_url)
    printed = 0
    try:
        for key in partitions:
            try:
                await redis.xgroup_create(key, name, id="$", mkstream=True)
            except ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise
        if ready is not None:
            ready.set()
        while not stop.is_set():
            history = any(p != ">" for p in pos.values())
            reply: Any = await redis.xreadgroup(
                name, consumer, pos, count=500, block=None if history else 200
            )
            items = reply.items() if isinstance(reply, dict) else (reply or ())
            pipe = redis.pipeline(transaction=False)
            for raw_key, entries in items:
                key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
                if pos[key] != ">":
                    pos[key] = ">" if not entries else _s(entries[-1][0])
                ids = []
                for eid, fields in entries:
                    if limit is not None and printed >= limit:
                        break  # unacked: a named group delivers the rest to its next run
                    try:
                        events = firehose_events(fields)
                    except (KeyError, TypeError, msgspec.DecodeError, msgspec.ValidationError):
                        logger.warning("skipping malformed firehose entry %r", eid)
                        ids.append(eid)
                        continue
                    whole = True
                    for ev in events:
                        if (stream_id and ev.stream_id != stream_id) or (
                            model and ev.model != model
                        ):
                            continue
                        if limit is not None and printed >= limit:
                            whole = False  # unacked: the next run prints this entry again
                            break
                        out.write(format_event(ev, fmt) + "\n")
                        printed += 1
                    if whole:
                        ids.append(eid)
                if ids:
                    pipe.xack(key, name, *ids)
            if len(pipe):
                await pipe.execute()
            out.flush()
            if limit is not None and printed >= limit:
                break
    finally:
        if fresh:
            with contextlib.suppress(Exception):
                await asyncio.shield(_destroy(redis, partitions, name))
        await redis.aclose()
    return printed


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


async def _destroy(redis: aredis.Redis, partitions: list[str], group: str) -> None:
    pipe = redis.pipeline(transaction=False)
    for key in partitions:
        pipe.xgroup_destroy(key, group)
    await pipe.execute(raise_on_error=False)
