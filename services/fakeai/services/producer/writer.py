"""Write coalescing: one flusher per process sends the writes of every stream in pipelines.

Streams never await Redis per chunk. They :meth:`LogWriter.put` an *item* and go on: an
*op* (a function that queues one or more commands on a redis-py pipeline), a :data:`Packed`
command group (RESP bytes), a :data:`Logged` data entry (the hot path: its log commands in RESP,
built once by the stream, see :mod:`.records`, plus its firehose event), or a :class:`Final`
(a stream's terminal op, its firehose event, and the op that must follow that event: the
request's XACK). A single flusher task takes everything pending and sends it in ONE write on
one connection, then reads the replies, then the next batch. The firehose events of a batch
go out as one batch entry per partition (:mod:`.firehose`), after the batch's own commands and
before the ``after`` ops of its :class:`Final` items.
Chunks of many streams that fall due together therefore share a round trip, which is where
the producer's throughput comes from (a pipeline of 100 XADDs costs ~17 µs per command against
~111 µs for an awaited XADD each; project notes, redis-faststream §1.9).

Why not ``pipeline.execute()``: at ~13k entries/s redis-py's per-argument packing
(``pack_command``) and per-reply parsing (a timeout context and a response callback per reply)
were half the producer's CPU. Packed items skip the packing entirely; replies are read raw
(``disable_decoding``) under one timeout for the whole batch, since only errors matter here.
Ops still go through redis-py's own packer (``Connection.pack_commands``), so they need not
know the protocol.

Contracts:

- Order: ops are sent in the order they were put, and Redis runs the commands of one
  connection in order, so a stream's entries land in seq order; firehose events keep their
  put order within a stream; a terminal entry's XACK runs only after the terminal XADD and
  after the firehose entry that carries its event (a request is never acknowledged before
  the metrics consumer can see its end).
- Backpressure: at most ``max_pending`` items wait; :meth:`put` awaits room beyond that (only
  while Redis is slow or down). :meth:`put_nowait` is the synchronous fast path for callers
  that put many items: it returns False instead of waiting.
- Redis down: the batch is retried with exponential backoff (cap ~2 s) until Redis returns; no
  op is dropped. A retried batch may re-send commands that had already run. That is harmless by
  construction: log entries have deterministic ids, so Redis rejects the copy ("ERR The ID
  specified in XADD is equal or smaller than the target stream top item",
  https://redis.io/docs/latest/commands/xadd/), and that one error is ignored; hash writes,
  EXPIRE, ZREM and XACK are idempotent. Firehose entries (auto ids) can be duplicated after a
  failure: the firehose is at-least-once, like any consumer group (its consumers drop
  events whose seq they have seen).
- Durability: :meth:`write` returns once the op's batch was executed (the stream task uses it
  for its terminal entry only, before the request is acknowledged).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import redis.asyncio as aredis
from redis.exceptions import ResponseError

from fakeai.services.producer.backoff import RETRYABLE, Backoff
from fakeai.services.producer.firehose import Event, Firehose, FirehoseBatch

__all__ = [
    "Final",
    "Item",
    "LogWriter",
    "Logged",
    "Op",
    "Packed",
    "WriteFailed",
    "is_duplicate_id_error",
]

logger = logging.getLogger(__name__)

Pipeline = Any
"""A redis-py asyncio pipeline (``redis.asyncio.client.Pipeline``); untyped in redis-py."""

Op = Callable[[Pipeline], None]
"""Queues one or more commands on a pipeline; must not await and must not fail."""

Packed: TypeAlias = tuple[bytes, int]
"""``(RESP bytes of n commands, n)``: commands already in the Redis protocol."""

Logged: TypeAlias = tuple[bytes, int, bytes, bytes, bytes]
"""A data entry: ``(RESP bytes of n commands, n, *firehose event)`` (see :data:`.Event`)."""


@dataclass(frozen=True, slots=True)
class Final:
    """A stream's end: ``op``, its firehose ``event``, then ``after`` (behind the firehose)."""

    op: Op
    event: Event
    after: Op


Item: TypeAlias = Op | Packed | Logged | Final
"""What :meth:`LogWriter.put` takes."""

_Batch: TypeAlias = list[tuple[Item, "asyncio.Future[None] | None"]]


class WriteFailed(Exception):
    """Redis rejected a command of an op with an error other than a duplicate entry id."""


def is_duplicate_id_error(exc: BaseException) -> bool:
    """The XADD error for an id that is not above the stream's last id: a re-sent entry."""
    return isinstance(exc, ResponseError) and "equal or smaller" in str(exc)


class LogWriter:
    """The per-process write coalescer (see the module docstring)."""

    def __init__(
        self,
        redis: aredis.Redis,
        *,
        firehose: Firehose | None = None,
        max_pending: int = 50_000,
        max_batch: int = 5_000,
        backoff_cap_s: float = 2.0,
    ) -> None:
        if max_pending < 1 or max_batch < 1:
            raise ValueError(
                f"max_pending and max_batch must be >= 1; got {max_pending}, {max_batch}"
            )
        self._redis = redis
        self._firehose = firehose or Firehose()
        self._max_pending = max_pending
        self._max_batch = max_batch
        self._backoff_cap_s = backoff_cap_s
        self._ops: _Batch = []
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        """Round trips sent (for figures and tests)."""
        self.commands = 0
        """Commands sent."""

    @property
    def pending(self) -> int:
        return len(self._ops)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="producer-writer")

    def put_nowait(self, item: Item) -> bool:
        """Queue ``item`` if there is room (True), else do nothing (False: await :meth:`put`).

        Synchronous, so the per-chunk path costs no coroutine (setting the wake event when it
        is already set is a cheap no-op).
        """
        if len(self._ops) >= self._max_pending:
            return False
        self._ops.append((item, None))
        self._wake.set()
        return True

    async def put(self, op: Item) -> None:
        """Queue ``op``; returns at once unless ``max_pending`` items already wait."""
        while len(self._ops) >= self._max_pending:
            self._room.clear()
            await self._room.wait()
        self._ops.append((op, None))
        self._wake.set()

    async def write(self, op: Item) -> None:
        """Queue ``op`` and wait until its batch has been executed by Redis.

        Raises :class:`WriteFailed` if Redis refused one of its commands (a duplicate id is
        not a failure); a refused firehose entry or ``after`` op of a :class:`Final` is logged.
        """
        while len(self._ops) >= self._max_pending:
            self._room.clear()
            await self._room.wait()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ops.append((op, fut))
        self._wake.set()
        await fut

    async def close(self, timeout_s: float = 5.0) -> None:
        """Flush what is pending (up to ``timeout_s``), then stop the flusher."""
        self._closing = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            logger.warning("writer: %d ops not flushed at shutdown (Redis down?)", self.pending)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for _, fut in self._ops:
            if fut is not None and not fut.done():
                fut.cancel()
        self._ops.clear()

    async def _run(self) -> None:
        while True:
            if not self._ops:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._ops[: self._max_batch]
            del self._ops[: self._max_batch]
            self._room.set()
            await self._send(batch)

    async def _send(self, batch: _Batch) -> None:
        backoff = Backoff(cap_s=self._backoff_cap_s)
        while True:
            try:
                results, bounds = await self._execute(batch)
            except RETRYABLE as e:
                if backoff.failures == 0:
                    logger.warning("writer: Redis unavailable (%s); retrying %d ops", e, len(batch))
                await backoff.sleep()
                continue
            if backoff.failures:
                logger.info("writer: Redis is back after %d retries", backoff.failures)
            break
        self.batches += 1
        self.commands += len(results)
        if results.count(None) == len(results):  # the common case: no error to attribute
            for _, fut in batch:
                if fut is not None and not fut.done():
                    fut.set_result(None)
            return
        start = 0
        for (_, fut), end in zip(batch, bounds, strict=True):
            error = next(
                (r for r in results[start:end] if r is not None and not is_duplicate_id_error(r)),
                None,
            )
            start = end
            if error is not None:
                logger.error("writer: Redis refused a command: %s", error)
            if fut is not None and not fut.done():
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(WriteFailed(str(error)))

    async def _execute(self, batch: _Batch) -> tuple[list[ResponseError | None], list[int]]:
        """Send the batch in one write on one connection; per command its error or None.

        Also returns each item's end index in that list; the commands after the last bound
        (firehose entries, trims, ``after`` ops) belong to no item: their errors are logged.
        """
        pool = self._redis.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            parts: list[bytes] = []
            bounds: list[int] = []
            n = 0
            pipe: Pipeline | None = None
            events = FirehoseBatch()
            add_event = events.add
            afters: list[Op] = []
            for item, _ in batch:
                kind = type(item)
                if kind is tuple:
                    parts.append(item[0])  # type: ignore[index]
                    n += item[1]  # type: ignore[index]
                    if len(item) == 5:  # type: ignore[arg-type]
                        add_event(item[2], item[3], item[4])  # type: ignore[index]
                else:
                    if kind is Final:
                        final: Final = item  # type: ignore[assignment]
                        op = final.op
                        add_event(*final.event)
                        afters.append(final.after)
                    else:
                        op = item  # type: ignore[assignment]
                    if pipe is None:
                        pipe = self._redis.pipeline(transaction=False)
                    n += self._pack_op(conn, pipe, op, parts)
                bounds.append(n)
            if events:
                fire, count = self._firehose.commands(events)
                parts.extend(fire)
                n += count
            for op in afters:
                if pipe is None:
                    pipe = self._redis.pipeline(transaction=False)
                n += self._pack_op(conn, pipe, op, parts)
            results: list[ResponseError | None] = []
            # One deadline for the whole batch instead of redis-py's one per reply.
            async with asyncio.timeout(conn.socket_timeout):
                await conn.send_packed_command(parts)
                for _ in range(n):
                    try:
                        # timeout=inf: no per-reply timeout context (the batch has one).
                        await conn.read_response(disable_decoding=True, timeout=math.inf)
                    except ResponseError as e:  # read whole: the connection stays in sync
                        results.append(e)
                    else:
                        results.append(None)
        except BaseException:
            # Unread replies would desynchronize the next user of this connection.
            await conn.disconnect(nowait=True)
            raise
        finally:
            await pool.release(conn)
        for error in results[bounds[-1] if bounds else 0 :]:
            if error is not None:
                logger.error("writer: Redis refused a firehose or ack command: %s", error)
        return results, bounds

    @staticmethod
    def _pack_op(conn: Any, pipe: Pipeline, op: Op, parts: list[bytes]) -> int:
        """Pack the commands ``op`` queues with redis-py's packer; how many there were."""
        stack = pipe.command_stack
        op(pipe)
        parts.extend(conn.pack_commands([args for args, _ in stack]))
        count = len(stack)
        stack.clear()
        return count
