"""``fakeai-streams migrate``: move a Redis from key layout 1 to layout 2 (:mod:`.keys`).

Layout 1 named a stream's keys by the stream itself (``<p>:{<sid>}:chunks``, ``<p>:{<sid>}:meta``)
and kept one requests stream, untagged firehose partitions and time series tagged per metric.
What the migration does, in this order:

1. Refuse while a layout-1 service still reads (a consumer of ``<p>:requests`` or of a firehose
   partition was active in the last :data:`LIVE_IDLE_S` seconds): it would go on writing the
   old keys. ``force`` skips the check.
2. Move every recorded stream's log and meta hash to ``Keys.chunks(sid)`` / ``Keys.meta(sid)``,
   expiry kept: ``RENAME`` on a single server; on a cluster the two names lie in different
   slots (RENAME across slots is CROSSSLOT), so ``DUMP`` + ``RESTORE`` (with the ``PTTL``) +
   ``DEL`` (https://redis.io/docs/latest/commands/restore/).
3. Delete the layout-1 transient keys, which the services rebuild: the requests stream (requests
   not served yet are dropped), the firehose partitions (events not read yet are dropped), the
   time series, "seen" markers and RedisTimeSeries keys, and the counters hash (metrics from
   before the migration are dropped). Kept: ``<p>:cancels`` and ``<p>:streams:active`` (same
   names in both layouts).
4. Set the layout marker ``Keys.layout()`` to :data:`~.keys.LAYOUT`.

Idempotent: a run finds only what is left (a stream half moved on a cluster, restored but not
yet deleted, is restored again with REPLACE from the old key, then deleted), and a migrated
Redis has nothing to do. ``dry_run`` reports the same plan and changes nothing.

Which keys are layout 1 is decided by :func:`classify`, a pure function.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

import redis.asyncio as aredis
from redis.exceptions import ResponseError

from fakeai.streams.client import LayoutMismatch, RedisClient
from fakeai.streams.keys import LAYOUT, Keys
from fakeai.timeseries.names import EDGE_METRICS, PRODUCER_METRICS

__all__ = [
    "LIVE_IDLE_S",
    "MigrationRefused",
    "Move",
    "OldKey",
    "Plan",
    "classify",
    "describe",
    "migrate",
    "plan",
]

LIVE_IDLE_S: Final = 10.0
"""A layout-1 consumer that read within this many seconds counts as a running service (a live
producer or metrics consumer reads every few seconds, blocking)."""
_METRICS = frozenset((*PRODUCER_METRICS, *EDGE_METRICS))
_BATCH = 500
_CONCURRENT_MOVES = 32


class MigrationRefused(RuntimeError):
    """The migration would race a running layout-1 service; the message names them."""


class OldKey(Enum):
    """The kinds of layout-1 keys."""

    CHUNKS = "chunks"
    META = "meta"
    REQUESTS = "requests"
    FIREHOSE = "firehose"
    TIMESERIES = "timeseries"
    COUNTERS = "counters"


_TRANSIENT = (OldKey.REQUESTS, OldKey.FIREHOSE, OldKey.TIMESERIES, OldKey.COUNTERS)


def classify(key: str, prefix: str) -> tuple[OldKey, str | None] | None:
    """``(kind, stream id or None)`` of a layout-1 key under ``prefix``; None for any other key
    (layout-2 keys included: their stream tag is a bucket number followed by ``:<sid>``, their
    time-series tag a model followed by the metric)."""
    head = f"{prefix}:"
    if not key.startswith(head):
        return None
    rest = key[len(head) :]
    if rest == "requests":
        return OldKey.REQUESTS, None
    if rest == "counters":
        return OldKey.COUNTERS, None
    if rest.startswith("events:") and rest[len("events:") :].isdigit():
        return OldKey.FIREHOSE, None
    if rest.startswith("{"):
        sid, close, tail = rest[1:].partition("}")
        if close and sid and tail in (":chunks", ":meta"):
            return (OldKey.CHUNKS if tail == ":chunks" else OldKey.META), sid
        return None
    if rest.startswith("ts:seen:{") and rest.endswith("}"):
        return OldKey.TIMESERIES, None
    for series in ("ts:{", "rts:{"):
        if rest.startswith(series):
            tag, close, tail = rest[len(series) :].partition("}")
            metric, sep, model = tag.partition(":")
            # layout 1: {<metric>:<model>}:<resolution or kind>...; layout 2: {<model>}:<metric>...
            after = tail[1:].split(":", 1)[0] if tail.startswith(":") else ""
            if close and sep and model and metric in _METRICS and after not in _METRICS:
                return OldKey.TIMESERIES, None
            return None
    return None


@dataclass(frozen=True, slots=True)
class Move:
    stream_id: str
    old: str
    new: str


@dataclass(slots=True)
class Plan:
    """What :func:`migrate` does (or did) on one Redis under one prefix."""

    marker_key: str
    marker: str | None
    """The layout marker found (None: none, so layout 1 or a fresh Redis)."""
    moves: list[Move] = field(default_factory=list)
    deletes: dict[OldKey, list[str]] = field(default_factory=dict)
    pending_requests: int = 0
    """Entries of the layout-1 requests stream (dropped with it)."""
    live: list[str] = field(default_factory=list)
    """Layout-1 consumers active in the last :data:`LIVE_IDLE_S` s (``key group consumer``)."""

    @property
    def streams(self) -> int:
        return len({m.stream_id for m in self.moves})

    @property
    def empty(self) -> bool:
        return not self.moves and not any(self.deletes.values()) and self.marker == LAYOUT


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a SCAN MATCH pattern (https://redis.io/docs/latest/commands/keys/)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


async def plan(redis: RedisClient, keys: Keys) -> Plan:
    """Scan the prefix's keys (every master on a cluster) and build the migration plan."""
    raw_marker: Any = await redis.get(keys.layout())
    marker = raw_marker.decode() if isinstance(raw_marker, bytes) else raw_marker
    if marker is not None and marker != LAYOUT:
        raise LayoutMismatch(
            f"this Redis holds FakeAI Streams data in key layout {marker} under prefix "
            f"{keys.prefix!r}; this version migrates layout 1 to layout {LAYOUT} only"
        )
    found = Plan(marker_key=keys.layout(), marker=marker)
    models_index = False
    async for raw in redis.scan_iter(match=f"{_glob_escape(keys.prefix)}:*", count=1000):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        if key == keys.ts_models():
            models_index = True
            continue
        kind = classify(key, keys.prefix)
        if kind is None:
            continue
        old, sid = kind
        if sid is not None:
            new = keys.chunks(sid) if old is OldKey.CHUNKS else keys.meta(sid)
            found.moves.append(Move(sid, key, new))
        else:
            found.deletes.setdefault(old, []).append(key)
    if models_index and marker is None:
        # Layout 1 only: the index of the time series deleted with them (same name in both).
        found.deletes.setdefault(OldKey.TIMESERIES, []).append(keys.ts_models())
    found.moves.sort(key=lambda m: (m.stream_id, m.old))
    for names in found.deletes.values():
        names.sort()
    if found.deletes.get(OldKey.REQUESTS):
        found.pending_requests = int(await redis.xlen(found.deletes[OldKey.REQUESTS][0]))
    found.live = await _live_consumers(
        redis, [*found.deletes.get(OldKey.REQUESTS, ()), *found.deletes.get(OldKey.FIREHOSE, ())]
    )
    return found


async def _live_consumers(redis: RedisClient, streams: list[str]) -> list[str]:
    live = []
    for key in streams:
        try:
            groups: Any = await redis.xinfo_groups(key)
        except ResponseError:  # not a stream (or gone meanwhile)
            continue
        for g in groups:
            name = g["name"]
            consumers: Any = await redis.xinfo_consumers(key, name)
            for c in consumers:
                if int(c["idle"]) < LIVE_IDLE_S * 1000:
                    live.append(f"{key} {_text(name)} {_text(c['name'])}")
    return live


def describe(found: Plan, *, dry_run: bool) -> list[str]:
    """The plan in words, one line each (what the CLI prints)."""
    p = "would " if dry_run else ""
    if found.empty:
        return [f"nothing to migrate: the prefix is on key layout {LAYOUT}"]
    lines = []
    if found.moves:
        lines.append(
            f"{p}move {found.streams} recorded streams ({len(found.moves)} keys) to layout "
            f"{LAYOUT} names:"
        )
        lines += [f"  {m.old} -> {m.new}" for m in found.moves]
    reasons = {
        OldKey.REQUESTS: (
            "the requests stream",
            f"{found.pending_requests} entries; requests not served yet are dropped",
        ),
        OldKey.FIREHOSE: (
            "the firehose partitions",
            "events not yet read by the metrics consumer or observers are dropped",
        ),
        OldKey.TIMESERIES: (
            "the time series",
            "latency metrics from before the migration are dropped",
        ),
        OldKey.COUNTERS: ("the counters", "request and token counts restart from 0"),
    }
    for kind in _TRANSIENT:
        names = found.deletes.get(kind)
        if names:
            what, why = reasons[kind]
            shown = ", ".join(names[:4]) + (f", ... ({len(names)} keys)" if len(names) > 4 else "")
            lines.append(f"{p}delete {what} of layout 1 ({why}): {shown}")
    if found.marker != LAYOUT:
        lines.append(f"{p}set the layout marker {found.marker_key} = {LAYOUT}")
    return lines


async def migrate(
    redis: RedisClient,
    keys: Keys,
    *,
    dry_run: bool = False,
    force: bool = False,
    say: Callable[[str], None] = print,
) -> Plan:
    """Migrate the prefix's keys to this layout (see the module docstring); returns the plan.

    Raises:
        LayoutMismatch: the Redis holds a layout this version does not know.
        MigrationRefused: a layout-1 service still reads (without ``force``).
    """
    found = await plan(redis, keys)
    if found.live and not force:
        refusal = (
            "layout-1 services still read this Redis (consumers active in the last "
            f"{LIVE_IDLE_S:.0f} s: {', '.join(found.live[:3])}); stop every old producer, "
            "metrics consumer and observer first, or pass --force"
        )
        if not dry_run:
            raise MigrationRefused(refusal)
        say(f"warning: {refusal}")
    for line in describe(found, dry_run=dry_run):
        say(line)
    if dry_run or found.empty:
        return found
    move = _move_cluster if isinstance(redis, aredis.RedisCluster) else _rename
    gate = asyncio.Semaphore(_CONCURRENT_MOVES)

    async def one(m: Move) -> None:
        async with gate:
            await move(redis, m.old, m.new)

    await asyncio.gather(*(one(m) for m in found.moves))
    for kind in _TRANSIENT:
        names = found.deletes.get(kind, [])
        for i in range(0, len(names), _BATCH):
            # RedisCluster.delete splits the keys by slot; each DEL stays in one slot.
            await redis.delete(*names[i : i + _BATCH])
    await redis.set(keys.layout(), LAYOUT)
    deleted = sum(len(v) for v in found.deletes.values())
    say(f"done: moved {found.streams} streams, deleted {deleted} keys, key layout {LAYOUT}")
    return found


async def _rename(redis: RedisClient, old: str, new: str) -> None:
    """RENAME keeps the value and its TTL, atomically (https://redis.io/docs/latest/commands/rename/)."""
    try:
        await redis.rename(old, new)
    except ResponseError as e:
        if "no such key" not in str(e).lower():  # gone since the scan: nothing to move
            raise


async def _move_cluster(redis: RedisClient, old: str, new: str) -> None:
    """Across slots: copy with its remaining TTL (REPLACE: a copy left by an interrupted run
    is overwritten from the old key, still the source of truth), then delete the old key."""
    ttl_ms = int(await redis.pttl(old))
    if ttl_ms == -2:  # gone since the scan
        return
    payload: Any = await redis.dump(old)
    if payload is None:
        return
    await redis.restore(new, max(ttl_ms, 0), payload, replace=True)
    await redis.delete(old)


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
