"""Recorded streams as JSON Lines: export a stream's log from Redis, import it back.

File format (one JSON object per line)::

    {"type": "meta", "stream_id": "...", "meta": {<the meta hash, as strings>}}
    {"type": "entry", "id": "<ms>-<seq>", "k": "c", "t": <µs>, "d": <chunk JSON>}
    ...

``d`` is the stored payload parsed as JSON, so a recording is readable and diffable. ``t``
(producer append time, µs since the epoch) is kept, so an imported recording replays with its
original timing. Import writes under the recorded stream id (its entry ids embed the creation
time) and refuses to overwrite an existing stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import msgspec
import redis.asyncio as aredis

from fakeai.streams.keys import Keys
from fakeai.streams.log import xrange_pages
from fakeai.streams.positions import created_ms_of, parse_entry_id

__all__ = ["RecordingError", "export_stream", "import_stream", "iter_log"]

_json = msgspec.json.Encoder()


class RecordingError(ValueError):
    """A recording that cannot be exported or imported; the message says why."""


async def iter_log(
    redis: aredis.Redis, keys: Keys, stream_id: str, after: str | None = None
) -> AsyncIterator[tuple[str, dict[bytes, bytes]]]:
    """Every entry of a stream's log after ``after`` (exclusive; None: from the start)."""
    async for page in xrange_pages(redis, keys.chunks(stream_id), after):
        for raw_id, fields in page:
            yield raw_id.decode(), fields


async def export_stream(redis: aredis.Redis, keys: Keys, stream_id: str) -> list[bytes]:
    """The stream as JSON Lines (each line ends with a newline)."""
    meta: Any = await redis.hgetall(keys.meta(stream_id))
    if not meta and not await redis.exists(keys.chunks(stream_id)):
        raise RecordingError(f"stream {stream_id} not found (unknown, or expired)")
    lines = [
        _json.encode(
            {
                "type": "meta",
                "stream_id": stream_id,
                "meta": {k.decode(): v.decode(errors="replace") for k, v in meta.items()},
            }
        )
        + b"\n"
    ]
    async for entry_id, fields in iter_log(redis, keys, stream_id):
        record = {
            "type": "entry",
            "id": entry_id,
            "k": fields.get(b"k", b"c").decode(),
            "t": int(fields.get(b"t", b"0")),
            "d": msgspec.Raw(fields.get(b"d", b"null")),
        }
        lines.append(_json.encode(record) + b"\n")
    return lines


def _parse(lines: Iterable[bytes | str]) -> tuple[str, dict[str, str], list[dict[str, Any]]]:
    stream_id: str | None = None
    meta: dict[str, str] = {}
    entries: list[dict[str, Any]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = msgspec.json.decode(line)
        except msgspec.DecodeError as e:
            raise RecordingError(f"line {n}: not JSON ({e})") from e
        if not isinstance(obj, dict) or obj.get("type") not in ("meta", "entry"):
            raise RecordingError(f"line {n}: expected an object with type 'meta' or 'entry'")
        if obj["type"] == "meta":
            stream_id = str(obj.get("stream_id", ""))
            meta = {str(k): str(v) for k, v in (obj.get("meta") or {}).items()}
        else:
            if parse_entry_id(str(obj.get("id", ""))) is None or "d" not in obj:
                raise RecordingError(f"line {n}: entry needs an id '<ms>-<seq>' and 'd'")
            entries.append(obj)
    if not stream_id or created_ms_of(stream_id) is None:
        raise RecordingError("the recording has no meta line with a valid stream_id")
    if not entries or entries[-1].get("k") not in ("d", "e"):
        raise RecordingError("the recording does not end with a terminal entry (k 'd' or 'e')")
    return stream_id, meta, entries


async def import_stream(
    redis: aredis.Redis, keys: Keys, lines: Iterable[bytes | str], *, retention_s: int = 0
) -> str:
    """Write a recording back into Redis; returns its stream id. One pipeline, atomic."""
    stream_id, meta, entries = _parse(lines)
    if await redis.exists(keys.chunks(stream_id), keys.meta(stream_id)):
        raise RecordingError(f"stream {stream_id} already exists; delete it first")
    pipe = redis.pipeline(transaction=True)
    for e in entries:
        fields = {"k": e.get("k", "c"), "d": _json.encode(e["d"]), "t": int(e.get("t", 0))}
        pipe.xadd(keys.chunks(stream_id), fields, id=e["id"])  # type: ignore[arg-type]
    meta = {**meta, "status": meta.get("status", "done"), "imported": "1"}
    pipe.hset(keys.meta(stream_id), mapping=meta)  # type: ignore[arg-type]
    if retention_s:
        pipe.expire(keys.chunks(stream_id), retention_s)
        pipe.expire(keys.meta(stream_id), retention_s)
    await pipe.execute()
    return stream_id
