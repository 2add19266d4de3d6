"""Recorded streams as JSON Lines: export a stream from Redis, import it back, delete it.

File format (one JSON object per line, :class:`MetaLine` then :class:`EntryLine` s)::

    {"type": "meta", "stream_id": "...", "meta": {<the meta hash, as strings>}}
    {"type": "entry", "id": "<ms>-<seq>", "k": "c", "t": <µs>, "d": <chunk JSON>}
    ...

``d`` is the stored payload as JSON (not a string holding JSON), so a recording is readable and
diffable, and it is carried as raw bytes both ways: an imported log holds the exported bytes.
``t`` (producer append time, µs since the epoch) is kept, so an imported recording replays with
its original timing. Import writes under the recorded stream id (its entry ids embed the
creation time) and refuses a stream that already exists, unless asked to replace it.

The log is read and written only through :mod:`fakeai.streams.log` (its parser, its packer,
its :class:`~fakeai.streams.log.Link`); this module never touches an entry's fields by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from fakeai.streams.client import RedisClient
from fakeai.streams.keys import Keys
from fakeai.streams.log import (
    TERMINAL_KINDS,
    Kind,
    Link,
    is_duplicate_id,
    iter_entries,
    last_entry,
    pack_command,
    pack_entry,
)
from fakeai.streams.meta import FINAL_STATUSES, F
from fakeai.streams.positions import EntryId, created_ms_of, parse_entry_id

__all__ = [
    "Deleted",
    "EntryLine",
    "MetaLine",
    "Recording",
    "RecordingError",
    "delete_stream",
    "export_stream",
    "import_stream",
    "parse_recording",
]

_KINDS = frozenset({Kind.CHUNK, Kind.RESPONSE, Kind.DONE, Kind.ERROR})


class RecordingError(ValueError):
    """A stream that cannot be exported, imported or deleted; the message says why."""


class MetaLine(msgspec.Struct, tag="meta", tag_field="type", kw_only=True):
    """The first line: the stream id and its meta hash (:mod:`fakeai.streams.meta` fields)."""

    stream_id: str
    meta: dict[str, str] = {}


class EntryLine(msgspec.Struct, tag="entry", tag_field="type", kw_only=True):
    """One log entry: its id, kind (``c``, ``r``, ``d``, ``e``), append time and payload."""

    id: str
    k: str = "c"
    t: int = 0
    d: msgspec.Raw


_encode = msgspec.json.Encoder().encode
_decode_line = msgspec.json.Decoder(MetaLine | EntryLine).decode


@dataclass(frozen=True, slots=True)
class Recording:
    """A parsed, checked recording (see :func:`parse_recording`)."""

    stream_id: str
    meta: dict[str, str]
    entries: list[EntryLine]


async def export_stream(redis: RedisClient, keys: Keys, stream_id: str) -> list[bytes]:
    """The stream as JSON Lines (each line ends with a newline)."""
    raw_meta: Any = await redis.hgetall(keys.meta(stream_id))
    meta = {k.decode(): v.decode(errors="replace") for k, v in raw_meta.items()}
    lines = [_encode(MetaLine(stream_id=stream_id, meta=meta)) + b"\n"]
    async for page in iter_entries(redis, keys.chunks(stream_id)):
        for e in page:
            line = EntryLine(
                id=e.id.decode(), k=e.kind.decode(), t=e.t_us, d=msgspec.Raw(e.data or b"null")
            )
            lines.append(_encode(line) + b"\n")
    if not meta and len(lines) == 1:
        raise RecordingError(f"stream {stream_id} not found (unknown, or expired)")
    return lines


def parse_recording(lines: Iterable[bytes | str]) -> Recording:
    """Parse and check a recording: a meta line with a valid stream id, entries with strictly
    increasing ids, known kinds, and one terminal entry (``d`` or ``e``), the last."""
    stream_id: str | None = None
    meta: dict[str, str] = {}
    entries: list[EntryLine] = []
    previous: EntryId | None = None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = _decode_line(line)
        except msgspec.ValidationError as e:
            raise RecordingError(
                f"line {n}: expected an object with type 'meta' or 'entry' ({e})"
            ) from e
        except msgspec.DecodeError as e:
            raise RecordingError(f"line {n}: not JSON ({e})") from e
        match obj:
            case MetaLine():
                stream_id, meta = obj.stream_id, obj.meta
            case EntryLine():
                position = parse_entry_id(obj.id)
                if position is None:
                    raise RecordingError(f"line {n}: entry id must be '<ms>-<seq>', got {obj.id!r}")
                if previous is not None and position <= previous:
                    raise RecordingError(f"line {n}: entry id {obj.id} is not above {previous}")
                if obj.k.encode() not in _KINDS:
                    raise RecordingError(f"line {n}: unknown entry kind {obj.k!r}")
                if entries and entries[-1].k.encode() in TERMINAL_KINDS:
                    raise RecordingError(f"line {n}: an entry after the terminal entry")
                previous = position
                entries.append(obj)
    if not stream_id or created_ms_of(stream_id) is None:
        raise RecordingError("the recording has no meta line with a valid stream_id")
    if not entries or entries[-1].k.encode() not in TERMINAL_KINDS:
        raise RecordingError("the recording does not end with a terminal entry (k 'd' or 'e')")
    return Recording(stream_id, meta, entries)


async def import_stream(
    redis: RedisClient,
    keys: Keys,
    lines: Iterable[bytes | str],
    *,
    retention_s: int = 0,
    replace: bool = False,
) -> str:
    """Write a recording into Redis; returns its stream id.

    The log, the meta hash and their expiry go in one MULTI/EXEC (a stream's keys share one
    slot, so this holds on a cluster too). ``retention_s`` 0 keeps the stream forever. A log
    written by someone else between the existence check and the write makes the entries'
    XADDs fail (their ids are not above its last one) and the import is refused; EXEC does not
    roll back (https://redis.io/docs/latest/develop/interact/transactions/), so the meta hash
    holds the recording's fields then.

    With ``replace``, a finished stream of that id is deleted first (:func:`delete_stream`;
    a running one is refused, as there).

    Raises:
        RecordingError: a malformed recording, a stream of that id already exists (without
            ``replace``), or is still running.
    """
    rec = parse_recording(lines)
    sid = rec.stream_id
    chunks, meta_key = keys.chunks(sid), keys.meta(sid)
    if await redis.exists(chunks, meta_key):
        if not replace:
            raise RecordingError(
                f"stream {sid} already exists: import --replace to overwrite it, or delete it "
                f"first (fakeai-streams delete {sid})"
            )
        await delete_stream(redis, keys, sid)
    meta = dict(rec.meta)
    if meta.get(F.STATUS) not in FINAL_STATUSES:
        meta[F.STATUS] = "done" if rec.entries[-1].k.encode() == Kind.DONE else "error"
    meta["imported"] = "1"
    log_key = chunks.encode()
    commands = [pack_command(b"MULTI")]
    commands += [
        pack_entry(log_key, e.id.encode(), e.k.encode(), bytes(e.d), e.t) for e in rec.entries
    ]
    fields = [part.encode() for item in meta.items() for part in item]
    commands.append(pack_command(b"HSET", meta_key.encode(), *fields))
    if retention_s:
        ttl = b"%d" % retention_s
        commands.append(pack_command(b"EXPIRE", log_key, ttl))
        commands.append(pack_command(b"EXPIRE", meta_key.encode(), ttl))
    commands.append(pack_command(b"EXEC"))
    link = Link(redis)
    replies = await link.execute([(link.slot(chunks), b"".join(commands), len(commands))])
    result = replies[-1]
    errors = [r for r in (result if isinstance(result, list) else [result]) if _is_error(r)]
    errors += [r for r in replies[:-1] if _is_error(r)]
    if errors:
        if any(map(is_duplicate_id, errors)):  # written by someone else since the check
            raise RecordingError(f"stream {sid} already exists; delete it first")
        raise RecordingError(f"Redis refused the import of {sid}: {errors[0]}")
    return sid


@dataclass(frozen=True, slots=True)
class Deleted:
    """What :func:`delete_stream` removed."""

    stream_id: str
    status: str
    was_running: bool


async def delete_stream(
    redis: RedisClient, keys: Keys, stream_id: str, *, force: bool = False
) -> Deleted:
    """Delete a stream's log and meta hash, and drop it from the active streams.

    A stream that is still running (no terminal entry, and a meta status that is not final)
    is refused unless ``force``: its producer would go on appending to the log. Cancel it first
    (``POST /v1/streams/{id}/cancel``), or force it when its producer is gone.

    Raises:
        RecordingError: no such stream, or a running stream without ``force``.
    """
    chunks, meta_key = keys.chunks(stream_id), keys.meta(stream_id)
    raw_status: Any = await redis.hget(meta_key, F.STATUS)
    last = await last_entry(redis, chunks)
    if raw_status is None and last is None and not await redis.exists(chunks, meta_key):
        raise RecordingError(f"stream {stream_id} not found (unknown, or expired)")
    status = raw_status.decode() if raw_status is not None else "unknown"
    running = status not in FINAL_STATUSES and not (last is not None and last.terminal)
    if running and not force:
        raise RecordingError(
            f"stream {stream_id} is still running (status {status}): cancel it first "
            f"(POST /v1/streams/{stream_id}/cancel), or pass --force if its producer is gone"
        )
    await redis.delete(chunks, meta_key)  # one slot: one command, also on a cluster
    await redis.zrem(keys.active(), stream_id)
    return Deleted(stream_id, status, running)


def _is_error(reply: object) -> bool:
    return isinstance(reply, Exception)
