"""The hub: one Redis reader per edge process for every stream that has subscribers.

One dedicated connection runs ``XREAD COUNT 512 BLOCK 1000 STREAMS k1..kn id1..idn`` over all
keys with subscribers and fans the entries out in memory to each subscriber's bounded queue, so
a stream watched by a thousand clients costs Redis one reader (a blocked XREAD per client would
cost O(clients) on every XADD: https://redis.io/docs/latest/commands/xread/).

Contract:

- Ids are always concrete, never ``$``: a ``$`` re-sent on every call loses the entries appended
  between two calls. A key's start is resolved once, when it is added (the newest entry id of
  the log, or ``<created_ms>-0`` for a stream this request created).
- Subscribe first, then read the backlog with XRANGE (:mod:`.reader`): every entry after
  :attr:`Subscription.start` reaches the queue, so backlog + queue has no gap; the reader drops
  ids it already sent (the seam).
- When the key set changes while the XREAD is blocked, ``CLIENT UNBLOCK <hub client id>`` from
  the command pool makes it return at once and the loop re-issues it with the new keys
  (https://redis.io/docs/latest/commands/client-unblock/).
- A terminal entry (``k`` = d or e) is delivered, then the key is dropped.
- A queue past its bound marks the subscriber overflowed; it ends with a resumable error.
- The blocking connection is never shared and never reused after an error or cancellation (a
  cancelled blocking read can leave an unread reply on its connection: redis/redis-py#2663,
  #2624): it is closed and a fresh one opened, with backoff. If Redis stays down past
  ``down_deadline_s``, every subscriber ends with ``redis_unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import RedisError

from fakeai.services.edge.log import PAGE, Entry, StreamInterrupted, parse_flat
from fakeai.wire.resp import pack

__all__ = ["Hub", "Subscription", "Wakeups"]

logger = logging.getLogger(__name__)

_RESUME_HINT = "reconnect with Last-Event-ID to resume"


class Wakeups:
    """Heartbeat timeouts shared by every waiting subscription: one loop timer per time slot,
    not one per wait.

    A subscription joins the slot that ends at the next multiple of ``timeout / 8`` after its
    deadline, so it wakes between ``timeout`` and ``9/8 timeout`` after its wait began. An idle
    SSE connection then costs a set entry instead of a loop timer (~0.5 KiB each; S5 holds
    10,000). Use from one event loop (the hub's).

    A subscription joins a slot at most once per period, not once per wait: each wait only
    notes when it began, and the slot, when it fires, settles the subscription's waiter if it
    has waited ``timeout`` by then, or moves it to the slot of its own deadline. A busy stream
    (a wait per delivered event) then costs no set add and discard per event.
    """

    __slots__ = ("_slots",)

    def __init__(self) -> None:
        self._slots: dict[float, set[Subscription]] = {}

    def join(
        self, loop: asyncio.AbstractEventLoop, sub: Subscription, due: float, timeout: float
    ) -> float:
        """Put ``sub`` in the slot of ``due`` (loop clock); returns that slot."""
        grain = timeout / 8
        when = math.ceil(due / grain) * grain if grain > 0 else loop.time()
        slot = self._slots.get(when)
        if slot is None:
            slot = self._slots[when] = set()
            loop.call_at(when, self._fire, loop, when)
        slot.add(sub)
        return when

    def discard(self, when: float, sub: Subscription) -> None:
        slot = self._slots.get(when)
        if slot is not None:
            slot.discard(sub)

    def _fire(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        now = loop.time()
        for sub in self._slots.pop(when, ()):
            sub._on_slot(loop, now)


class Subscription:
    """One client's view of a live stream: a bounded queue the hub fills."""

    __slots__ = (
        "_failure",
        "_items",
        "_slot",
        "_timeout",
        "_waiter",
        "_waiting_since",
        "_wakeups",
        "key",
        "limit",
        "overflowed",
        "start_seq",
    )

    def __init__(self, key: bytes, start_seq: int, limit: int, wakeups: Wakeups) -> None:
        self._wakeups = wakeups
        self.key = key
        self.start_seq = start_seq
        """Every entry with a larger seq reaches this queue (unless it overflows)."""
        self.limit = limit
        # A plain list handed over whole by get() (no copy), and one bare future as the
        # wake-up: cheaper per delivered batch than a deque copy plus an asyncio.Event.
        self._items: list[Entry] = []
        self._waiter: asyncio.Future[None] | None = None
        self._failure: StreamInterrupted | None = None
        self.overflowed = False
        # Heartbeat bookkeeping (see Wakeups): the slot this subscription is in, if any, and
        # when the current wait began.
        self._slot: float | None = None
        self._timeout = 0.0
        self._waiting_since = 0.0

    def _push(self, batch: list[Entry]) -> None:
        if self._failure is not None:
            return
        # One XREAD batch may exceed the bound by itself (a fast reader takes it at once);
        # entries piling up behind an unread batch are what marks a slow client.
        if self._items and len(self._items) + len(batch) > self.limit:
            # Memory stays bounded: drop what is queued; the client resumes from Redis.
            self._items.clear()
            self.overflowed = True
            self._fail(
                StreamInterrupted(
                    "slow_consumer",
                    f"client fell more than {self.limit} events behind; {_RESUME_HINT}",
                )
            )
            return
        self._items.extend(batch)
        w = self._waiter  # _wake, inline: this runs once per subscriber per XREAD reply
        if w is not None and not w.done():
            w.set_result(None)

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _fail(self, failure: StreamInterrupted) -> None:
        if self._failure is None:
            self._failure = failure
        self._wake()

    async def get(self, timeout: float | None = None) -> list[Entry]:
        """The entries queued so far (waits for at least one).

        With ``timeout``, an empty list when nothing arrived within it (at most an eighth
        later, see :class:`Wakeups`): the SSE heartbeat is sent from the response's own task
        on that signal (see :mod:`.responses`). The timer settles the waiter; it is not a
        cancelling timeout scope.

        Raises:
            StreamInterrupted: the queue overflowed, Redis stayed down, or the edge is closing.
        """
        while not self._items:
            if self._failure is not None:
                raise self._failure
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            if timeout is not None:
                since = self._waiting_since = loop.time()
                if self._slot is None or timeout != self._timeout:
                    self._release()  # a different timeout: the slot of the new one
                    self._slot = self._wakeups.join(loop, self, since + timeout, timeout)
                self._timeout = timeout
            try:
                await waiter
            finally:
                self._waiter = None
            if timeout is not None and not self._items and self._failure is None:
                return []
        if self._failure is not None:
            raise self._failure
        batch, self._items = self._items, []
        return batch

    def _on_slot(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        """Its :class:`Wakeups` slot fired: settle a wait that has lasted its timeout, move a
        younger one to the slot of its deadline; one that is not waiting re-joins on its
        next wait."""
        self._slot = None
        w = self._waiter
        if w is None or w.done():
            return
        due = self._waiting_since + self._timeout
        if due <= now + 0.001:  # loop timers may fire up to a millisecond early
            w.set_result(None)
        else:
            self._slot = self._wakeups.join(loop, self, due, self._timeout)

    def _release(self) -> None:
        """Leave the heartbeat slot (the subscription has ended)."""
        if self._slot is not None:
            self._wakeups.discard(self._slot, self)
            self._slot = None


class Hub:
    """Reads every subscribed stream log on one dedicated connection and fans out in memory."""

    def __init__(
        self,
        url: str,
        commands: aredis.Redis,
        *,
        block_ms: int = 1000,
        down_deadline_s: float = 10.0,
    ) -> None:
        self._url = url
        self._cmd = commands
        self._block_ms = block_ms
        self._down_deadline_s = down_deadline_s
        self._subs: dict[bytes, set[Subscription]] = {}
        self._last: dict[bytes, bytes] = {}
        self._wake = asyncio.Event()
        self._gen = 0
        self._blocked_gen: int | None = None
        self._conn: aredis.Redis | None = None
        self._client_id: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._kick_task: asyncio.Task[None] | None = None
        self._closed = False
        self._wakeups = Wakeups()
        self.reads = 0
        """XREAD calls made (for diagnostics and tests)."""
        self.overflows = 0
        """Subscribers ended as slow consumers."""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="edge-hub")

    def end_all(self, code: str, message: str) -> None:
        """End every subscriber with a resumable error (shutdown, or Redis down)."""
        failure = StreamInterrupted(code, message)
        for subs in self._subs.values():
            for sub in subs:
                sub._fail(failure)
        self._subs.clear()
        self._last.clear()

    async def close(self) -> None:
        """Stop reading and close the dedicated connection (never returned to a pool)."""
        self._closed = True
        self.end_all("edge_shutdown", f"the server is shutting down; {_RESUME_HINT}")
        for task in (self._task, self._kick_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._drop_connection()

    @property
    def keys(self) -> int:
        return len(self._last)

    # -- subscribers -------------------------------------------------------------------------

    def subscribe(self, key: str, start_id: str, limit: int) -> Subscription:
        """Register a queue for ``key``; entries after ``start_id`` (or the hub's position for
        the key, when it already reads it) will reach it.

        ``start_id`` must be a concrete id no later than anything the caller has not read
        yet: the newest entry id of the log, or ``<created_ms>-0``.
        """
        if self._closed:
            raise StreamInterrupted("edge_shutdown", f"the server is shutting down; {_RESUME_HINT}")
        k = key.encode()
        last = self._last.get(k)
        if last is None:
            last = self._last[k] = start_id.encode()
            self._subs[k] = set()
            self._changed()
        sub = Subscription(k, int(last.partition(b"-")[2]), limit, self._wakeups)
        self._subs[k].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub._release()
        subs = self._subs.get(sub.key)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            # Reading an unwatched key for one more round is harmless: no unblock needed.
            del self._subs[sub.key]
            self._last.pop(sub.key, None)

    def _changed(self) -> None:
        self._gen += 1
        self._wake.set()
        if self._blocked_gen is not None and self._kick_task is None:
            self._kick_task = asyncio.create_task(self._kick(), name="edge-hub-unblock")

    async def _kick(self) -> None:
        """CLIENT UNBLOCK the hub's XREAD so it re-issues with the new key set.

        Returns 0 while the XREAD is still on its way to the server; retry briefly then.
        """
        try:
            for _ in range(100):
                if self._blocked_gen is None or self._blocked_gen >= self._gen:
                    return
                if self._client_id is not None and await self._cmd.client_unblock(self._client_id):
                    return
                await asyncio.sleep(0.002)
        except RedisError as e:
            logger.debug("hub unblock failed: %s", e)
        finally:
            self._kick_task = None

    # -- the read loop -----------------------------------------------------------------------

    async def _connect(self) -> aredis.Redis:
        if self._conn is None:
            conn = aredis.Redis.from_url(
                self._url, single_connection_client=True, socket_connect_timeout=2.0
            )
            # Raw XREAD replies on this private connection: redis-py's callback turns every
            # entry into a dict (and records lag metrics) only for _dispatch to pick three
            # fields out; parse_flat reads the flat field list directly.
            conn.response_callbacks.pop("XREAD", None)
            try:
                self._client_id = int(await conn.client_id())
            except BaseException:
                await conn.aclose()
                raise
            self._conn = conn
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn, self._client_id = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.aclose()

    async def _run(self) -> None:
        backoff = 0.05
        down_since: float | None = None
        while not self._closed:
            if not self._last:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                conn = await self._connect()
                if not self._last:  # every subscriber left while connecting
                    continue
                keys = list(self._last)
                ids = [self._last[k] for k in keys]
                self._blocked_gen = self._gen
                try:
                    # https://redis.io/docs/latest/commands/xread/ (concrete ids, see above)
                    resp = await self._xread(conn, keys, ids)
                finally:
                    self._blocked_gen = None
                self.reads += 1
            except (RedisError, OSError) as e:
                await self._drop_connection()
                now = time.monotonic()
                if down_since is None:
                    down_since = now
                    logger.warning("hub lost Redis (%s); reconnecting", e)
                elif now - down_since > self._down_deadline_s:
                    self.end_all("redis_unavailable", f"Redis is unavailable; {_RESUME_HINT}")
                    down_since = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            if down_since is not None:
                logger.info("hub reconnected to Redis")
            down_since, backoff = None, 0.05
            self._dispatch(resp)

    async def _xread(self, conn: aredis.Redis, keys: list[bytes], ids: list[bytes]) -> Any:
        """``XREAD COUNT PAGE BLOCK <block_ms> STREAMS <keys> <ids>``, packed here.

        The command names every watched key and is sent once per reply (dozens of times a
        second under load, a thousand keys each): packing it directly costs about a fifth of
        redis-py's generic ``pack_command``. The connection is private (see
        :meth:`_connect`); errors surface as from ``execute_command``.
        """
        connection = conn.connection
        if connection is None:  # not yet initialised (_connect normally has done it)
            return await conn.execute_command(  # type: ignore[no-untyped-call]
                "XREAD", "COUNT", PAGE, "BLOCK", self._block_ms, "STREAMS", *keys, *ids
            )
        packed = pack(
            b"XREAD", b"COUNT", b"%d" % PAGE, b"BLOCK", b"%d" % self._block_ms, b"STREAMS",
            *keys, *ids,
        )  # fmt: skip
        await connection.send_packed_command(packed, check_health=False)
        return await connection.read_response()

    def _dispatch(self, resp: Any) -> None:
        """Fan out a raw XREAD reply: a map ``{key: [[id, [field, value, ...]], ...]}``
        (RESP3), a list ``[[key, [[id, [...]], ...]], ...]`` (RESP2), or nil on timeout."""
        items = resp.items() if isinstance(resp, dict) else (resp or ())
        last = self._last
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
