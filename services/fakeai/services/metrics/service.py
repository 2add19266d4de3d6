"""The metrics consumer service: firehose partitions -> samples -> time series in Redis.

Contract:
- Reads every partition ``Keys.events(p)`` in group ``metrics`` (created explicitly at id 0
  with MKSTREAM; BUSYGROUP tolerated) with raw ``XREADGROUP COUNT 2000 BLOCK`` (about 9 µs per
  entry against 18 for FastStream's batch mode; notes/redis-faststream.md §0.2). N consumers
  share the partitions' entries. COUNT 2000 (was 500) puts ~4x more finished streams in each
  commit, whose bucket writes they share: 12 -> ~5 µs CPU per entry with the raw reply parsing
  (``python -m fakeai.services.metrics.bench --streams 1000 --chunks 200``).
- Delivery is at-least-once; samples are exactly-once per stream: a stream's samples are folded
  on its terminal entry and committed in one MULTI/EXEC together with its ``Keys.ts_seen``
  marker, under WATCH of those markers (https://redis.io/docs/latest/develop/interact/transactions/
  #optimistic-locking-using-check-and-set). A redelivered terminal entry finds its marker and
  adds nothing. Then one XACK per partition.
- Entries of a consumer that died stay pending; every consumer runs XAUTOCLAIM for entries idle
  longer than ``claim_idle_s`` (https://redis.io/docs/latest/commands/xautoclaim/).
- Entries are batches (field ``b``: many streams' events, :mod:`fakeai.wire.messages`) or
  single events (field ``f``, the older format); each stream's group in a batch is folded
  with one state look-up.
- A malformed entry is logged, counted (``invalid_events``) and acked: it never blocks the group.

The MULTI/EXEC commit needs all keys on one node; on Redis Cluster the commit would have to be
split per slot (not supported here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import defaultdict
from typing import Any

import msgspec
import redis.asyncio as aredis
from redis.exceptions import ResponseError, WatchError

from fakeai.config import Settings
from fakeai.services.metrics.tracker import FinishedStream, StreamTracker, fold_finished, rebuild
from fakeai.services.runtime import run_until_signalled
from fakeai.streams import METRICS_GROUP, Keys, parse_entry_id
from fakeai.timeseries import Fold
from fakeai.timeseries import names as n
from fakeai.timeseries.native import NativeSeries
from fakeai.wire import decode_firehose, decode_firehose_batch

__all__ = ["MetricsConsumer", "ensure_groups", "main", "run"]

logger = logging.getLogger(__name__)

READ_COUNT = 2000
_BATCH = b"b"
_FIELDS = (_BATCH, b"f")
_UNKNOWN_MODEL = "unknown"


async def ensure_groups(redis: aredis.Redis, streams: list[str], group: str, start: str) -> None:
    """``XGROUP CREATE <stream> <group> <start> MKSTREAM`` on each stream; BUSYGROUP is fine."""
    for key in streams:
        try:
            await redis.xgroup_create(key, group, id=start, mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise


class MetricsConsumer:
    """One consumer of the ``metrics`` group. :meth:`step` handles one read; :meth:`run` loops."""

    def __init__(
        self,
        redis: aredis.Redis,
        settings: Settings,
        *,
        consumer_name: str | None = None,
        claim_idle_s: float = 30.0,
        block_ms: int = 500,
        read_count: int = READ_COUNT,
        linger_s: float = 0.025,
    ) -> None:
        if not claim_idle_s > 0:
            raise ValueError(f"claim_idle_s must be > 0, got {claim_idle_s!r}")
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.name = consumer_name or f"{socket.gethostname()}-{os.getpid()}"
        self.claim_idle_ms = max(1, int(claim_idle_s * 1000))
        self.block_ms = block_ms
        self.read_count = read_count
        self.linger_s = linger_s
        """After a read that was not full, wait this long before the next one (see :meth:`run`)."""
        self.partitions = self.keys.all_events(settings.firehose_partitions)
        # https://redis.io/docs/latest/commands/xreadgroup/ ; ">" = entries never delivered.
        self._read_args = ("XREADGROUP", "GROUP", METRICS_GROUP, self.name, "COUNT", read_count,
                           "BLOCK", block_ms, "STREAMS", *self.partitions,
                           *(">",) * len(self.partitions))  # fmt: skip
        # Raw XREADGROUP replies through a client sharing ``redis``'s pool: redis-py's reply
        # callback builds a dict per entry (and records lag metrics) only for us to take one
        # field out of it, about a fifth of the consumer's CPU per entry; :func:`_f_value`
        # reads the flat field list instead. Its own callback table leaves ``redis`` as it is.
        self._raw = aredis.Redis(connection_pool=redis.connection_pool)
        self._raw.response_callbacks.pop("XREADGROUP", None)
        self.tracker = StreamTracker()
        self.native: NativeSeries | None = None
        self.seen_ttl_s = settings.firehose_retention_s + 3600
        self.streams_committed = 0
        self.entries_read = 0
        self.events_read = 0
        """Firehose events folded (a batch entry carries many)."""
        self._next_claim = 0.0

    async def start(self) -> None:
        await ensure_groups(self.redis, self.partitions, METRICS_GROUP, "0")
        self.native = await NativeSeries.detect(self.redis, self.keys, self.settings)
        logger.info(
            "metrics consumer %s reading %d partitions (RedisTimeSeries %s)",
            self.name,
            len(self.partitions),
            "on" if self.native else "absent",
        )

    async def step(self) -> int:
        """Reclaim idle entries when due, then read and commit one batch; entries handled."""
        handled = 0
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + max(0.05, self.claim_idle_ms / 2000)
            handled += await self._reclaim()
        reply: Any = await self._raw.execute_command(*self._read_args)  # type: ignore[no-untyped-call]
        items = reply.items() if isinstance(reply, dict) else (reply or ())  # RESP3 or RESP2
        batch = [(_s(key), entries) for key, entries in items]
        handled += await self.handle(batch)
        return handled

    async def _reclaim(self) -> int:
        handled = 0
        for key in self.partitions:
            start = "0-0"
            while True:
                res = await self.redis.xautoclaim(
                    key, METRICS_GROUP, self.name, self.claim_idle_ms, start, count=self.read_count
                )
                start = _s(res[0])
                entries = res[1]
                if entries:
                    handled += await self.handle([(key, entries)])
                if start == "0-0" or not entries:
                    break
        if handled:
            logger.info("reclaimed %d idle firehose entries", handled)
        return handled

    async def handle(self, batch: list[tuple[str, list[Any]]]) -> int:
        """Fold, commit and ack one batch of ``(partition key, [(id, fields)])``.

        ``fields`` is a dict (redis-py's parsed replies) or the flat ``[name, value, ...]`` list
        of a raw reply.
        """
        acks: dict[str, list[Any]] = defaultdict(list)
        finished: list[FinishedStream] = []
        invalid = 0
        events = 0
        observe = self.tracker.observe
        observe_stream = self.tracker.observe_stream
        for key, entries in batch:
            ids = acks[key]
            for entry in entries:
                eid, fields = entry[0], entry[1]
                ids.append(eid)
                name, raw = _payload(fields)
                try:
                    if name == _BATCH:
                        for group in decode_firehose_batch(raw):
                            events += len(group.events)
                            f = observe_stream(group)
                            if f is not None:
                                finished.append(f)
                        continue
                    if name is None:
                        raise ValueError("no 'b' or 'f' field")
                    ev = decode_firehose(raw)
                except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
                    invalid += 1
                    logger.warning("invalid firehose entry %s %s: %s", key, _s(eid), e)
                    continue
                events += 1
                f = observe(ev)
                if f is not None:
                    finished.append(f)
        count = sum(len(v) for v in acks.values())
        if not count:
            return 0
        self.entries_read += count
        self.events_read += events
        finished = await self._complete(finished)
        committed = await self._commit(finished, invalid)
        pipe = self.redis.pipeline(transaction=False)
        for key, ids in acks.items():
            if ids:
                pipe.xack(key, METRICS_GROUP, *ids)
        await pipe.execute()
        self.tracker.mark_finished([f.stream_id for f in finished])
        if self.native is not None and committed:
            await self.native.write(committed)
        return count

    async def _complete(self, finished: list[FinishedStream]) -> list[FinishedStream]:
        """Rebuild the streams this consumer did not see whole from their logs (one pipeline)."""
        partial = [i for i, f in enumerate(finished) if not f.complete]
        if not partial:
            return finished
        pipe = self.redis.pipeline(transaction=False)
        for i in partial:
            pipe.xrange(self.keys.chunks(finished[i].stream_id))
        logs = await pipe.execute(raise_on_error=False)
        out = list(finished)
        for i, entries in zip(partial, logs, strict=True):
            if isinstance(entries, Exception):
                continue
            times: list[tuple[int, int]] = []
            for eid, fields in entries:
                pos = parse_entry_id(eid)
                kind = fields.get(b"k")
                t = fields.get(b"t")
                if pos is None or t is None or kind not in (b"c", b"r"):
                    continue
                with contextlib.suppress(ValueError):
                    times.append((pos.seq, int(t)))
            out[i] = rebuild(finished[i], times)
        return out

    async def _commit(self, finished: list[FinishedStream], invalid: int) -> Fold | None:
        """Write the samples of streams not yet counted, and their markers, atomically."""
        if not finished:
            if invalid:
                fold = Fold(self.settings.ts_fine_s)
                fold.incr(n.INVALID_EVENTS, _UNKNOWN_MODEL, invalid)
                pipe = self.redis.pipeline(transaction=False)
                fold.write(pipe, self.keys, self.settings)
                await pipe.execute()
            return None
        seen = [self.keys.ts_seen(f.stream_id) for f in finished]
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(*seen)
                    marks = await pipe.mget(seen)
                    fresh = [f for f, m in zip(finished, marks, strict=True) if m is None]
                    fold = Fold(self.settings.ts_fine_s)
                    for f in fresh:
                        fold_finished(fold, f)
                    if invalid:
                        fold.incr(n.INVALID_EVENTS, _UNKNOWN_MODEL, invalid)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    fold.write(pipe, self.keys, self.settings)
                    for f in fresh:
                        pipe.set(self.keys.ts_seen(f.stream_id), b"1", ex=self.seen_ttl_s)
                    await pipe.execute()
                    break
                except WatchError:
                    continue  # another consumer committed one of these streams: re-check
        self.streams_committed += len(fresh)
        if len(fresh) < len(finished):
            logger.debug("skipped %d streams already counted", len(finished) - len(fresh))
        return fold

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        while not stop.is_set():
            handled = await self.step()
            if 0 < handled < self.read_count and self.linger_s > 0:
                # A short read: let the next one gather more. With latency simulation on, a
                # firehose entry carries a few chunks, and reading each as it lands cost ~0.2
                # of a core at a few thousand chunks/s; this adds at most linger_s of lag.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.linger_s)
        logger.info(
            "metrics consumer %s stopped: %d entries, %d streams",
            self.name,
            self.entries_read,
            self.streams_committed,
        )


def _payload(fields: Any) -> tuple[bytes | None, bytes]:
    """``(name, value)`` of an entry's ``b`` (batch) or ``f`` (one event) field, from a dict
    or from a raw reply's flat field list; ``(None, b"")`` when it has neither."""
    if type(fields) is list:
        if len(fields) == 2 and fields[0] in _FIELDS:  # what producers write: one field
            return fields[0], fields[1]
        for i in range(0, len(fields) - 1, 2):
            if fields[i] in _FIELDS:
                return fields[i], fields[i + 1]
        return None, b""
    if isinstance(fields, dict):
        for name in _FIELDS:
            value = fields.get(name)
            if value is not None:
                return name, value
    return None, b""


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    consumer_name: str | None = None,
    claim_idle_s: float | None = None,
) -> None:
    """Consume until ``stop`` is set (or forever). Needs ``settings.redis_url``."""
    if not settings.redis_url:
        raise ValueError("the metrics consumer needs a Redis: set FAKEAI_REDIS_URL")
    stop = stop or asyncio.Event()
    idle = claim_idle_s if claim_idle_s is not None else settings.metrics_claim_idle_s
    redis = aredis.Redis.from_url(settings.redis_url)
    try:
        consumer = MetricsConsumer(redis, settings, consumer_name=consumer_name, claim_idle_s=idle)
        await consumer.run(stop)
    finally:
        await redis.aclose()


def main(settings: Settings) -> None:
    """Run one consumer until SIGINT/SIGTERM (uvloop when installed)."""
    run_until_signalled(lambda stop: run(settings, stop=stop))
