"""The metrics consumer service: firehose partitions -> samples -> time series in Redis.

Contract:
- Reads every firehose partition ``Keys.events(p)`` in group ``metrics`` (created at id 0 with
  MKSTREAM by :func:`fakeai.streams.log.ensure_group`); N consumers share the entries.
- Reads are raw ``XREADGROUP COUNT 2000 BLOCK`` on dedicated connections
  (:meth:`fakeai.streams.log.Link.reader`), one per read set (:meth:`Link.read_sets`): one read
  over all partitions on a single server, one per partition on a Redis Cluster (a multi-key
  read may not span slots, https://redis.io/docs/latest/operate/oss_and_stack/reference/
  cluster-spec/#hash-tags), each set in its own task. A raw reply skips redis-py's reply
  callback, which builds a dict per entry only for us to take one field out of it
  (:func:`fakeai.streams.log.firehose.payload_field` reads the flat field list). COUNT 2000
  puts more finished streams in each commit, whose bucket writes they share
  (``python -m fakeai.services.metrics.bench --streams 1000 --chunks 200``).
- Delivery is at-least-once; samples are exactly-once per stream: a stream's samples are folded
  on its terminal entry and committed per model, in one MULTI/EXEC with the stream's "seen"
  marker, under WATCH of the markers (:mod:`fakeai.services.metrics.commit`). Then XACK.
- A flush that fails (Redis away, a failover) is retried, with backoff, until it succeeds; the
  models it committed before failing are not counted again.
- Entries of a consumer that died stay pending; every consumer runs XAUTOCLAIM on each
  partition for entries idle longer than ``claim_idle_s``
  (https://redis.io/docs/latest/commands/xautoclaim/).
- Entries are batches (field ``b``: many streams' events) or single events (field ``f``, the
  older format; :mod:`fakeai.streams.log.firehose`); each stream's group in a batch is folded
  with one state look-up.
- A malformed entry is logged, counted (``invalid_events`` of model ``unknown``) and acked: it
  never blocks the group.
- A Redis restart or failover, or a Redis out of memory (``maxmemory`` reached with
  ``noeviction``: "OOM command not allowed", :data:`WAITED_OUT`), never ends the consumer: it
  logs the failure once, naming the cause, retries with backoff (opening its readers again,
  refreshing the cluster's slot map), creates the group again when it vanished (NOGROUP: a
  Redis restarted without its data), and logs when Redis works again. It also forgets which
  streams it committed: a failover can lose acknowledged writes, so entries that come back are
  counted again unless their markers survived (:meth:`StreamTracker.forget_finished`). Only a
  key-layout mismatch (:class:`fakeai.streams.client.LayoutMismatch`) or a bug ends it.

Shutdown (:meth:`MetricsConsumer.run`, once ``stop`` is set):
1. stop reading: each reader's blocked XREADGROUP is ended with CLIENT UNBLOCK (at worst it
   returns after ``block_ms``), and no reader reads again;
2. the flush in flight finishes (a failing one stops retrying: its entries stay pending and are
   reclaimed by another consumer);
3. close the readers and the commit connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from redis.exceptions import OutOfMemoryError, ResponseError

from fakeai.config import Settings
from fakeai.services.backoff import RETRYABLE, Backoff, is_nogroup
from fakeai.services.metrics.batch import Batch, collect
from fakeai.services.metrics.commit import Committer
from fakeai.services.metrics.tracker import FinishedStream, StreamTracker, rebuild
from fakeai.services.runtime import run_until_signalled
from fakeai.streams import METRICS_GROUP, Keys
from fakeai.streams.client import RedisClient, check_layout, connect
from fakeai.streams.log import PAGE, Link, Reader, ensure_group, iter_entries, parse_entry
from fakeai.streams.log import pack_command as pack
from fakeai.timeseries.native import NativeSeries

__all__ = ["LINGER_S", "READ_COUNT", "WAITED_OUT", "MetricsConsumer", "main", "run"]

logger = logging.getLogger(__name__)

READ_COUNT = 2000

LINGER_S = 0.25
"""After a read that was not full, how long the consumer waits before the next one, so that
the next gathers more: its cost is mostly per commit (a MULTI/EXEC per model with a write per
sketch bin), not per event. With latency simulation on, a firehose entry carries a few chunks;
at 150 paced gpt-4o streams (4,400 chunks/s) the consumer used 0.19 cores with 25 ms and 0.07
with 250 ms, the dashboards' figures then trailing by up to a quarter of a second more
(``fakeai-streams up``, then ``fakeai-streams bench -c 150 --duration 35 --max-tokens 100
--ramp-s 3``; CPU from ``/proc`` over 20 s of it). A full read is followed at once."""

WAITED_OUT: tuple[type[BaseException], ...] = (*RETRYABLE, OutOfMemoryError)
"""Failures the consumer retries with backoff until they pass: Redis (or a node) away, and a
Redis that refuses writes because it is out of memory (the OOM reply to a write once
``maxmemory`` is reached under the ``noeviction`` policy, https://redis.io/docs/latest/develop/
reference/eviction/); its reads and acks still work, only the commits wait. Issue 10: the
consumer used to exit on the OOM reply."""


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class MetricsConsumer:
    """One consumer of the ``metrics`` group. :meth:`step` reads once; :meth:`run` loops."""

    def __init__(
        self,
        redis: RedisClient,
        settings: Settings,
        *,
        consumer_name: str | None = None,
        claim_idle_s: float = 30.0,
        block_ms: int = 500,
        read_count: int = READ_COUNT,
        linger_s: float = LINGER_S,
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
        self._partition_of = {k: p for p, k in enumerate(self.partitions)}
        self.link = Link(redis)
        self.committer = Committer(redis, self.keys, settings)
        self.tracker = StreamTracker()
        self.native: NativeSeries | None = None
        self.read_sets = self.link.read_sets([k.encode() for k in self.partitions])
        # https://redis.io/docs/latest/commands/xreadgroup/ ; ">" = entries never delivered.
        self._reads = [
            pack(b"XREADGROUP", b"GROUP", METRICS_GROUP.encode(), self.name.encode(),
                 b"COUNT", b"%d" % read_count, b"BLOCK", b"%d" % block_ms,
                 b"STREAMS", *keys, *(b">",) * len(keys))
            for keys in self.read_sets
        ]  # fmt: skip
        self._readers: list[Reader | None] = [None] * len(self.read_sets)
        self._stop = asyncio.Event()
        self._claim_every_s = max(0.05, self.claim_idle_ms / 2000)
        self._next_claim = 0.0
        self.streams_committed = 0
        self.entries_read = 0
        self.events_read = 0
        """Firehose events folded (a batch entry carries many)."""

    async def __aenter__(self) -> MetricsConsumer:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Check the key layout, create the group on every partition, detect RedisTimeSeries.

        Raises:
            LayoutMismatch: the Redis holds data of another key layout.
        """
        await check_layout(self.redis, self.keys)
        await ensure_group(self.redis, self.partitions, METRICS_GROUP, "0")
        self.native = await NativeSeries.detect(self.redis, self.keys, self.settings)
        logger.info(
            "metrics consumer %s reading %d partitions in %d read(s) on %s (RedisTimeSeries %s)",
            self.name,
            len(self.partitions),
            len(self.read_sets),
            "a Redis Cluster" if self.link.cluster else "one Redis",
            "on" if self.native else "absent",
        )

    async def close(self) -> None:
        """Close the readers and the commit connections (the client passed in stays open)."""
        for i in range(len(self._readers)):
            await self._close_reader(i)
        await self.committer.close()

    # -- reading -------------------------------------------------------------------------

    async def step(self) -> int:
        """Reclaim idle entries when due, then read and commit once from every read set;
        entries handled."""
        handled = 0
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + self._claim_every_s
            handled += await self.reclaim()
        for i in range(len(self.read_sets)):
            handled += await self._read(i)
        return handled

    async def _read(self, i: int) -> int:
        reader = self._readers[i]
        if reader is None:
            reader = self._readers[i] = await self.link.reader(self.read_sets[i][0])
        try:
            reply = await reader.call(self._reads[i])
        except BaseException as e:
            if not is_nogroup(e):  # the connection may be broken, or its node gone
                await self._close_reader(i)
            raise
        items = reply.items() if isinstance(reply, dict) else (reply or ())  # RESP3 or RESP2
        return await self.handle(items)

    async def _close_reader(self, i: int) -> None:
        reader, self._readers[i] = self._readers[i], None
        if reader is not None:
            await reader.close()

    async def reclaim(self) -> int:
        """Claim and handle entries idle longer than ``claim_idle_s`` (of a dead consumer)."""
        handled = 0
        for key in self.partitions:
            start = "0-0"
            while True:
                try:
                    res = await self.redis.xautoclaim(
                        key, METRICS_GROUP, self.name, self.claim_idle_ms, start,
                        count=self.read_count,
                    )  # fmt: skip
                except ResponseError as e:
                    if is_nogroup(e):
                        break  # Redis lost the group; the reader creates it again
                    raise
                start, entries = _s(res[0]), res[1]
                if entries:
                    handled += await self.handle([(key, entries)])
                if start == "0-0":
                    break
        if handled:
            logger.info(
                "metrics consumer %s reclaimed %d idle firehose entries", self.name, handled
            )
        return handled

    # -- folding and committing ----------------------------------------------------------

    async def handle(self, items: Iterable[tuple[Any, list[Any]]]) -> int:
        """Fold, commit and ack one read: ``(partition key, [(id, fields), ...])`` items.

        ``fields`` is a dict (redis-py's parsed replies) or the flat ``[name, value, ...]`` list
        of a raw reply. Returns the number of entries; a failing commit is retried (see
        :meth:`_flush`) before this returns.
        """
        batch = collect(items, self.tracker, self._partition_of, self.settings.ts_fine_s)
        if not batch.entries:
            return 0
        self.entries_read += batch.entries
        self.events_read += batch.events
        await self._flush(batch)
        return batch.entries

    async def _flush(self, batch: Batch) -> None:
        """Commit and ack ``batch``, retrying with backoff until it succeeds or ``stop``."""
        backoff = Backoff()
        while True:
            try:
                await self._flush_once(batch)
                break
            except WAITED_OUT as e:
                if self._stop.is_set():
                    raise
                await self._failed(backoff, "commit", e)
        if backoff.failures:
            self._recovered(backoff, "commit")

    async def _flush_once(self, batch: Batch) -> None:
        if not batch.completed:
            batch.finished = await self._complete(batch.finished)
            batch.completed = True
        await self.committer.commit(batch.finished, batch.invalid, out=batch.done)
        pipe = self.redis.pipeline(transaction=False)
        for key, ids in batch.acks.items():
            if ids:
                pipe.xack(key, METRICS_GROUP, *ids)
        for reply in await pipe.execute(raise_on_error=False):
            # NOGROUP: Redis lost the group (and these entries' pending state) meanwhile.
            if isinstance(reply, Exception) and not is_nogroup(reply):
                raise reply
        self.tracker.mark_finished([f.stream_id for f in batch.finished])
        self.streams_committed += batch.done.streams
        if batch.finished and batch.done.streams < len(batch.finished):
            logger.debug(
                "skipped %d streams already counted", len(batch.finished) - batch.done.streams
            )
        if self.native is not None and batch.done.fold:
            await self.native.write(batch.done.fold)

    async def _complete(self, finished: list[FinishedStream]) -> list[FinishedStream]:
        """Rebuild the streams this consumer did not see whole from their logs: the first page
        of every such log in one pipeline, the rest (long streams) page by page."""
        partial = [i for i, f in enumerate(finished) if not f.complete]
        if not partial:
            return finished
        pipe = self.redis.pipeline(transaction=False)
        for i in partial:
            pipe.xrange(self.keys.chunks(finished[i].stream_id), count=PAGE)
        pages = await pipe.execute(raise_on_error=False)
        out = list(finished)
        for i, page in zip(partial, pages, strict=True):
            if isinstance(page, Exception):
                continue
            log = [parse_entry(eid, fields) for eid, fields in page]
            if len(page) == PAGE:
                key = self.keys.chunks(finished[i].stream_id)
                async for more in iter_entries(self.redis, key, log[-1].id.decode()):
                    log += more
            out[i] = rebuild(finished[i], log)
        return out

    # -- running -------------------------------------------------------------------------

    async def _failed(self, backoff: Backoff, what: str, e: BaseException) -> None:
        """Log the first failure of an outage, forget the routing and the finished streams,
        wait before the next try."""
        if not backoff.failures:
            until = "has memory again" if isinstance(e, OutOfMemoryError) else "answers"
            logger.warning(
                "metrics consumer %s: %s failed (%s: %s); retrying with backoff until Redis %s",
                self.name, what, type(e).__name__, e, until,
            )  # fmt: skip
        await self.committer.reset()
        self.tracker.forget_finished()  # what was committed may be lost: markers decide
        await backoff.sleep(self._stop)

    def _recovered(self, backoff: Backoff, what: str) -> None:
        logger.info(
            "metrics consumer %s: %s works again after %d retries (%.1f s)",
            self.name, what, backoff.failures, time.monotonic() - backoff.since,
        )  # fmt: skip
        backoff.reset()

    async def _read_loop(self, i: int) -> None:
        stop, backoff = self._stop, Backoff()
        keys = [_s(k) for k in self.read_sets[i]]
        group_gone = False  # said so once; until a read works again
        while not stop.is_set():
            try:
                handled = await self._read(i)
            except WAITED_OUT as e:
                if stop.is_set():
                    break
                await self._failed(backoff, f"reading {keys}", e)
                continue
            except ResponseError as e:
                if not is_nogroup(e):
                    raise
                if not group_gone:
                    group_gone = True
                    logger.warning(
                        "metrics consumer %s: group %r is gone from %s (Redis restarted without "
                        "its data?); creating it again", self.name, METRICS_GROUP, keys,
                    )  # fmt: skip
                try:
                    await ensure_group(self.redis, keys, METRICS_GROUP, "0")
                except WAITED_OUT as failed:  # XGROUP CREATE is refused when out of memory
                    if not stop.is_set():
                        await self._failed(backoff, f"creating the group on {keys}", failed)
                continue
            group_gone = False
            if backoff.failures:
                self._recovered(backoff, f"reading {keys}")
            if 0 < handled < self.read_count and self.linger_s > 0:
                # A short read: let the next one gather more (LINGER_S).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.linger_s)

    async def _reclaim_loop(self) -> None:
        stop, backoff = self._stop, Backoff()
        while not stop.is_set():
            try:
                await self.reclaim()
            except WAITED_OUT as e:
                if not stop.is_set():
                    await self._failed(backoff, "reclaiming", e)
                continue
            if backoff.failures:
                self._recovered(backoff, "reclaiming")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._claim_every_s)

    async def _unblock_readers(self) -> None:
        await self._stop.wait()
        for reader in self._readers:
            if reader is not None:
                with contextlib.suppress(Exception):
                    await reader.unblock()

    async def run(self, stop: asyncio.Event) -> None:
        """Start (retrying while Redis is away), then read, fold and commit until ``stop``;
        shut down as the module docstring says. Closes this consumer's connections."""
        self._stop = stop
        try:
            backoff = Backoff()
            while not stop.is_set():
                try:
                    await self.start()
                    break
                except WAITED_OUT as e:
                    await self._failed(backoff, "start", e)
            if stop.is_set():
                return
            if backoff.failures:
                self._recovered(backoff, "start")
            tasks = [asyncio.create_task(self._read_loop(i)) for i in range(len(self.read_sets))]
            tasks.append(asyncio.create_task(self._reclaim_loop()))
            unblock = asyncio.create_task(self._unblock_readers())
            try:
                await asyncio.gather(*tasks)
            finally:
                for t in (*tasks, unblock):
                    t.cancel()
                await asyncio.gather(*tasks, unblock, return_exceptions=True)
        finally:
            await self.close()
        logger.info(
            "metrics consumer %s stopped: %d entries, %d streams",
            self.name,
            self.entries_read,
            self.streams_committed,
        )


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    consumer_name: str | None = None,
    claim_idle_s: float | None = None,
) -> None:
    """Consume until ``stop`` is set (or forever). Needs ``settings.redis_url``; a Redis that is
    not up yet is waited for."""
    if not settings.redis_url:
        raise ValueError("the metrics consumer needs a Redis: set FAKEAI_REDIS_URL")
    stop = stop or asyncio.Event()
    idle = claim_idle_s if claim_idle_s is not None else settings.metrics_claim_idle_s
    backoff = Backoff()
    while True:
        try:
            redis = await connect(settings.redis_url, cluster=settings.redis_cluster)
            break
        except RETRYABLE as e:
            if not backoff.failures:
                logger.warning("metrics consumer: cannot reach Redis (%s); retrying", e)
            await backoff.sleep(stop)
            if stop.is_set():
                return
    try:
        consumer = MetricsConsumer(redis, settings, consumer_name=consumer_name, claim_idle_s=idle)
        await consumer.run(stop)
    finally:
        await redis.aclose()


def main(settings: Settings) -> None:
    """Run one consumer until SIGINT/SIGTERM (uvloop when installed)."""
    run_until_signalled(lambda stop: run(settings, stop=stop))
