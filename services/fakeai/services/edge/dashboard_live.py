"""The dashboard's view of running streams: a snapshot from Redis, then firehose updates.

Pure state (:class:`LiveStreams`) plus the one read that seeds it (:func:`snapshot`). The
feed (:mod:`.dashboard_feed`) reads the firehose and applies every event here; each flush
takes the rows that changed since the last one.

A row: ``{"id", "model", "created_ms", "status", "tokens", "chunks", "error_code"}``.

- ``chunks`` is the highest chunk seq seen (a stream's entries are numbered 1, 2, ...);
- ``tokens`` sums the output tokens of the chunks seen; a terminal entry carries the stream's
  total, which replaces the sum. A stream that was already running when the view began is
  seeded with its log length as both counts (the log does not store tokens per chunk; the
  generators write one token per chunk);
- the firehose is at-least-once (``fakeai.streams.log``): an event whose seq is not above the
  row's is a repeat and is dropped, so tokens are never counted twice.

A finished row (``done``, ``error``) is reported once and then forgotten.
"""

from __future__ import annotations

from typing import Any

from fakeai.services.edge.tenants import OWNER_FIELD, Tenant, can_see
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient
from fakeai.streams.log import Kind
from fakeai.streams.meta import F

__all__ = ["LiveStreams", "Row", "snapshot"]

Row = dict[str, Any]

_DATA = (Kind.CHUNK.decode(), Kind.RESPONSE.decode())
_ENDED = {Kind.DONE.decode(): "done", Kind.ERROR.decode(): "error"}


def _text(v: Any) -> str | None:
    return v.decode(errors="replace") if isinstance(v, bytes) else v


class LiveStreams:
    """Rows of running streams, updated by firehose events (module docstring)."""

    __slots__ = ("_changed", "_rows", "_seq")

    def __init__(self) -> None:
        self._rows: dict[str, Row] = {}
        self._seq: dict[str, int] = {}
        self._changed: set[str] = set()

    def __len__(self) -> int:
        return len(self._rows)

    def seed(self, rows: list[Row]) -> None:
        """Rows from :func:`snapshot` (not reported as changes: the snapshot itself is)."""
        for row in rows:
            self._rows[row["id"]] = row
            self._seq[row["id"]] = row["chunks"]

    def apply(
        self,
        stream_id: str,
        model: str,
        created_ms: int,
        seq: int,
        kind: str,
        tokens: int,
        error_code: str | None = None,
    ) -> None:
        """One firehose event of one stream."""
        if seq <= self._seq.get(stream_id, 0):
            return  # a repeat (at-least-once), or older than the snapshot
        self._seq[stream_id] = seq
        row = self._rows.get(stream_id)
        if row is None:
            row = self._rows[stream_id] = {
                "id": stream_id,
                "model": model,
                "created_ms": created_ms,
                "status": "running",
                "tokens": 0,
                "chunks": 0,
                "error_code": None,
            }
        if kind in _DATA:
            row["tokens"] += tokens
            row["chunks"] = seq
        elif kind in _ENDED:
            row["status"] = _ENDED[kind]
            row["tokens"] = tokens or row["tokens"]
            row["error_code"] = error_code
        self._changed.add(stream_id)

    def take(self) -> list[Row]:
        """The rows changed since the last call, oldest stream first; finished ones are
        forgotten once taken."""
        out = sorted((self._rows[s] for s in self._changed), key=lambda r: r["created_ms"])
        self._changed.clear()
        for row in out:
            if row["status"] != "running":
                # A finished stream sends nothing more; a late repeat of its terminal entry
                # would only report it finished once more.
                del self._rows[row["id"]]
                self._seq.pop(row["id"], None)
        return out

    def rows(self) -> list[Row]:
        """Every row held, oldest stream first."""
        return sorted(self._rows.values(), key=lambda r: r["created_ms"])


async def snapshot(
    redis: RedisClient, keys: Keys, tenant: Tenant, limit: int
) -> tuple[list[Row], dict[str, bool]]:
    """The newest ``limit`` running streams the tenant may see, and who owns what was read
    (``{stream_id: visible}``, to seed the feed's visibility cache). Two round trips: the
    active index, then one pipeline of meta fields and log lengths."""
    raw: Any = await redis.zrevrange(keys.active(), 0, limit - 1, withscores=True)
    ids = [_text(sid) or "" for sid, _ in raw]
    pipe = redis.pipeline(transaction=False)
    for sid in ids:
        pipe.hmget(keys.meta(sid), [F.MODEL, F.STATUS, OWNER_FIELD])
        pipe.xlen(keys.chunks(sid))
    replies: list[Any] = await pipe.execute() if ids else []
    rows: list[Row] = []
    seen: dict[str, bool] = {}
    for i, ((_, score), sid_text) in enumerate(zip(raw, ids, strict=True)):
        (model, status, owner), length = replies[2 * i], int(replies[2 * i + 1])
        seen[sid_text] = can_see(tenant, _text(owner))
        status_text = _text(status) or "queued"
        if not seen[sid_text] or status_text not in ("queued", "running"):
            continue
        rows.append(
            {
                "id": sid_text,
                "model": _text(model),
                "created_ms": int(score),
                "status": status_text,
                "tokens": length,
                "chunks": length,
                "error_code": None,
            }
        )
    rows.sort(key=lambda r: r["created_ms"])
    return rows, seen
