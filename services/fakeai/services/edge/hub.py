"""The hub: the edge's blocking Redis readers for every stream that has subscribers.

A reader runs ``XREAD COUNT 512 BLOCK 1000 STREAMS k1..kn id1..idn`` over the watched keys it
owns and fans the entries out in memory to each subscriber's bounded queue
(:class:`~.subscription.Subscription`), so a stream watched by a thousand clients costs Redis
one read (a blocked XREAD per client would cost O(clients) on every XADD:
https://redis.io/docs/latest/commands/xread/).

How many readers. A multi-key command may only name keys of one slot on a Redis Cluster, even
keys that sit on one node (CROSSSLOT: https://redis.io/docs/latest/operate/oss_and_stack/
reference/cluster-spec/#hash-tags). So:

- single server: ONE reader blocks on every watched key;
- cluster: one reader per slot with watched streams. A stream's keys carry its bucket's hash
  tag (:meth:`fakeai.streams.Keys.chunks`, :data:`fakeai.streams.STREAM_BUCKETS` = 64 buckets),
  so that is one reader per bucket with watched streams: at most 64 per edge, spread over the
  masters, at 1 or at 10,000 open streams. Each reader has its own task, key set, generation
  and unblock kick, and a dedicated connection to the node that owns its slot
  (:meth:`fakeai.streams.log.Link.reader`).
- A reader whose keys are all gone goes idle: its task waits for a key and it KEEPS its
  connection (one per bucket at most), so the bucket's next stream is read without a connect
  and a ``CLIENT ID`` round trip. It is closed after an error and by :meth:`Hub.close`.

Contract:

- Ids are always concrete, never ``$``: a ``$`` re-sent on every call loses the entries appended
  between two calls. A key's start is resolved once, when it is added (the newest entry id of
  the log, or ``<created_ms>-0`` for a stream this request created).
- Subscribe first, then read the backlog with XRANGE (:mod:`.reader`): every entry after
  :attr:`Subscription.start_seq` reaches the queue, so backlog + queue has no gap; the reader
  drops ids it already sent (the seam).
- When a reader's key set grows while its XREAD is blocked, ``CLIENT UNBLOCK <its client id>``
  from another connection to its node makes the read return at once and the loop re-issues it
  with the new keys (https://redis.io/docs/latest/commands/client-unblock/).
- A terminal entry (``k`` = d or e) is delivered, then the key is dropped.
- A queue past its bound marks the subscriber overflowed; it ends with a resumable error.
- A blocking connection is never shared and never reused after an error, a cancellation or a
  missing reply (redis/redis-py#2663, #2624: a cancelled blocking read can leave an unread reply
  on its connection): it is closed and a fresh one opened, with backoff. On a cluster the slot
  map is reloaded first (one reload at a time for all readers), so a MOVED reply (resharding, a
  failover) or a lost node leads to the node that owns the slot now. ASK (a slot half migrated)
  is not followed with ASKING: the reader retries until MOVED names the new owner.
- A reply is expected within the block time plus :data:`REPLY_MARGIN_S`; past that the node is
  taken for gone (a socket that died without a FIN).
- If a reader cannot read for ``down_deadline_s``, its subscribers end with the resumable
  ``redis_unavailable`` error; the other readers go on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from redis.exceptions import RedisClusterException, RedisError

from fakeai.services.edge.interrupted import RESUME_HINT, StreamInterrupted
from fakeai.services.edge.subscription import Subscription, Wakeups
from fakeai.streams.log import PAGE, Link, Reader, entry_seq, pack_command, parse_flat

__all__ = ["REPLY_MARGIN_S", "Hub", "Subscription", "Wakeups"]

logger = logging.getLogger(__name__)

REPLY_MARGIN_S = 5.0
"""How much longer than its BLOCK time a read may wait for its reply before the reader gives
up on the connection."""
_BACKOFF_MIN_S = 0.05
_BACKOFF_MAX_S = 1.0
_READ_ERRORS = (RedisError, RedisClusterException, OSError)
"""What a lost node, a redirection or a refused connection raises (TimeoutError is an OSError);
``RedisClusterException`` is not a ``RedisError``: it comes from a slot no node serves yet."""


class _Lane:
    """One blocking reader: the watched keys of one slot (every key, on a single server)."""

    __slots__ = ("blocked_gen", "gen", "kick_task", "last", "reader", "slot", "task", "wake")

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.last: dict[bytes, bytes] = {}
        """Watched key -> the id its next read starts after."""
        self.gen = 0
        """Bumped when a key is added; the read in flight covers ``blocked_gen``."""
        self.blocked_gen: int | None = None
        self.reader: Reader | None = None
        self.task: asyncio.Task[None] | None = None
        self.kick_task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()


class Hub:
    """The edge's blocking readers and their in-memory fan-out (see the module docstring)."""

    def __init__(
        self,
        link: Link,
        *,
        block_ms: int = 1000,
        down_deadline_s: float = 10.0,
    ) -> None:
        self._link = link
        self._down_deadline_s = down_deadline_s
        self._reply_timeout_s = block_ms / 1000 + REPLY_MARGIN_S
        self._xread = (b"XREAD", b"COUNT", b"%d" % PAGE, b"BLOCK", b"%d" % block_ms, b"STREAMS")
        self._subs: dict[bytes, set[Subscription]] = {}
        self._lanes: dict[int, _Lane] = {}
        self._started = False
        self._closed = False
        self._refreshing: asyncio.Task[None] | None = None
        self._wakeups = Wakeups()
        self.reads = 0
        """XREAD calls answered (for diagnostics and tests)."""
        self.overflows = 0
        """Subscribers ended as slow consumers."""

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def link(self) -> Link:
        """The raw Redis adapter the hub reads with (:class:`~fakeai.streams.log.Link`), shared
        with the edge's per-request writes (:mod:`.publish`)."""
        return self._link

    def start(self) -> None:
        """Start reading (each reader's task starts with its first key)."""
        self._started = True
        for lane in self._lanes.values():
            self._start_lane(lane)

    def end_all(self, code: str, message: str) -> None:
        """End every subscriber with a resumable error (shutdown)."""
        failure = StreamInterrupted(code, message)
        for subs in self._subs.values():
            for sub in subs:
                sub._fail(failure)
        self._subs.clear()
        for lane in self._lanes.values():
            lane.last.clear()

    async def close(self) -> None:
        """Stop reading and close every reader's connection (never returned to a pool)."""
        self._closed = True
        self.end_all("edge_shutdown", f"the server is shutting down; {RESUME_HINT}")
        lanes = list(self._lanes.values())
        tasks = [t for lane in lanes for t in (lane.task, lane.kick_task) if t is not None]
        if self._refreshing is not None:
            tasks.append(self._refreshing)
        for task in tasks:
            task.cancel()
        # A read can miss its cancellation: on Python 3.11 redis-py's send (asyncio.wait_for)
        # swallows one that lands as the send completes (CPython gh-86296), and the read then
        # waits for its XREAD's reply, up to the block time. Closing the connections first
        # ends such a read at once.
        for lane in lanes:
            await self._drop(lane)
        # gather, not a suppressed await per task: a cancellation of close() itself goes up
        await asyncio.gather(*tasks, return_exceptions=True)
        for lane in lanes:
            await self._drop(lane)  # one a task opened before it saw the close

    @property
    def keys(self) -> int:
        """Watched keys (a snapshot: safe to read from another thread)."""
        return sum(len(lane.last) for lane in tuple(self._lanes.values()))

    @property
    def subscriptions(self) -> int:
        """Registered subscribers over every watched key (a snapshot, like :attr:`keys`)."""
        return sum(len(subs) for subs in tuple(self._subs.values()))

    @property
    def readers(self) -> int:
        """Open reader connections (busy or idle)."""
        return sum(lane.reader is not None for lane in tuple(self._lanes.values()))

    # -- subscribers -------------------------------------------------------------------------

    def subscribe(self, key: str, start_id: str, limit: int) -> Subscription:
        """Register a queue for ``key``; entries after ``start_id`` (or the hub's position for
        the key, when it already reads it) will reach it.

        ``start_id`` must be a concrete id no later than anything the caller has not read
        yet: the newest entry id of the log, or ``<created_ms>-0``.
        """
        if self._closed:
            raise StreamInterrupted("edge_shutdown", f"the server is shutting down; {RESUME_HINT}")
        k = key.encode()
        slot = self._link.slot(k)
        lane = self._lanes.get(slot)
        if lane is None:
            lane = self._lanes[slot] = _Lane(slot)
            self._start_lane(lane)
        last = lane.last.get(k)
        if last is None:
            last = lane.last[k] = start_id.encode()
            self._subs[k] = set()
            self._changed(lane)
        sub = Subscription(k, entry_seq(last), limit, self._wakeups)
        self._subs[k].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Drop ``sub``; the key stops being read once its last subscriber leaves.
        Idempotent: a response and its log iterator may both release one subscription."""
        sub._release()
        subs = self._subs.get(sub.key)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            # Reading an unwatched key for one more round is harmless: no unblock needed.
            del self._subs[sub.key]
            lane = self._lanes.get(self._link.slot(sub.key))
            if lane is not None:
                lane.last.pop(sub.key, None)

    def _start_lane(self, lane: _Lane) -> None:
        if lane.task is None and self._started and not self._closed:
            lane.task = asyncio.create_task(self._run(lane), name=f"edge-hub-{lane.slot}")

    def _changed(self, lane: _Lane) -> None:
        lane.gen += 1
        lane.wake.set()
        if lane.blocked_gen is not None and lane.kick_task is None:
            lane.kick_task = asyncio.create_task(self._kick(lane), name="edge-hub-unblock")

    async def _kick(self, lane: _Lane) -> None:
        """CLIENT UNBLOCK the lane's XREAD so it re-issues with the new key set.

        Returns 0 while the XREAD is still on its way to the server; retry briefly then.
        """
        try:
            for _ in range(100):
                if lane.blocked_gen is None or lane.blocked_gen >= lane.gen:
                    return
                reader = lane.reader
                if reader is not None and reader.client_id and await reader.unblock():
                    return
                await asyncio.sleep(0.002)
        except _READ_ERRORS as e:  # the read loop sees the same failure and recovers
            logger.debug("hub unblock failed: %s", e)
        finally:
            lane.kick_task = None

    def _fail_lane(self, lane: _Lane, code: str, message: str) -> None:
        failure = StreamInterrupted(code, message)
        for key in lane.last:
            for sub in self._subs.pop(key, ()):
                sub._fail(failure)
        lane.last.clear()

    # -- the read loop -----------------------------------------------------------------------

    async def _run(self, lane: _Lane) -> None:
        last = lane.last
        backoff = _BACKOFF_MIN_S
        down_since: float | None = None
        while not self._closed:
            if not last:
                down_since = None
                lane.wake.clear()
                await lane.wake.wait()
                continue
            try:
                async with asyncio.timeout(self._reply_timeout_s):
                    reader = lane.reader
                    if reader is None:
                        reader = lane.reader = await self._link.reader(next(iter(last)))
                    keys = list(last)
                    if not keys:  # every subscriber left while connecting
                        continue
                    # https://redis.io/docs/latest/commands/xread/ (concrete ids, see above)
                    packed = pack_command(*self._xread, *keys, *[last[k] for k in keys])
                    lane.blocked_gen = lane.gen
                    try:
                        resp = await reader.call(packed)
                    finally:
                        lane.blocked_gen = None
                self.reads += 1
            except _READ_ERRORS as e:
                await self._drop(lane)
                now = time.monotonic()
                if down_since is None:
                    down_since = now
                    logger.warning(
                        "hub reader of slot %d lost Redis (%s: %s); reconnecting",
                        lane.slot,
                        type(e).__name__,
                        e,
                    )
                elif now - down_since > self._down_deadline_s:
                    self._fail_lane(
                        lane, "redis_unavailable", f"Redis is unavailable; {RESUME_HINT}"
                    )
                    down_since = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                await self._refresh()  # after the pause: a failover takes time to settle
                continue
            if down_since is not None:
                logger.info("hub reader of slot %d reconnected", lane.slot)
            down_since, backoff = None, _BACKOFF_MIN_S
            self._dispatch(last, resp)

    async def _drop(self, lane: _Lane) -> None:
        reader, lane.reader = lane.reader, None
        if reader is not None:
            await reader.close()

    async def _refresh(self) -> None:
        """Reload the cluster's slot map, one reload shared by every reader that asks."""
        if not self._link.cluster:
            return
        task = self._refreshing
        if task is None or task.done():
            task = self._refreshing = asyncio.create_task(self._link.refresh())
        try:
            await asyncio.shield(task)
        except _READ_ERRORS as e:  # no node answers yet: the next connect fails and retries
            logger.debug("hub slot map reload failed: %s", e)

    def _dispatch(self, last: dict[bytes, bytes], resp: Any) -> None:
        """Fan out a raw XREAD reply: a map ``{key: [[id, [field, value, ...]], ...]}``
        (RESP3), a list ``[[key, [[id, [...]], ...]], ...]`` (RESP2), or nil on timeout."""
        items = resp.items() if isinstance(resp, dict) else (resp or ())
        for key, rows in items:
            if not rows or key not in last:
                continue
            if len(rows) == 1:  # the usual case under load: one new entry per stream
                entry = parse_flat(*rows[0])
                batch = [entry]
                terminal = entry.terminal
            else:
                batch = [parse_flat(i, f) for i, f in rows]
                terminal = False
                for entry in batch:
                    if entry.terminal:
                        terminal = True
                        break
            last[key] = batch[-1].id
            subs = self._subs.get(key)
            if subs:
                for sub in subs:
                    if sub.overflowed:
                        continue
                    sub._push(batch)
                    if sub.overflowed:
                        self.overflows += 1
            if terminal:
                self._subs.pop(key, None)
                last.pop(key, None)
