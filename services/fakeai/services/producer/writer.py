"""Write coalescing: one flusher per process sends the writes of every stream in pipelines.

Streams never await Redis per chunk. They :meth:`LogWriter.put` an *item* and go on. Items are
commands already in the Redis protocol (packed with :mod:`fakeai.streams.log`'s packers by
:mod:`.records`), each tagged with the cluster slot of its keys:

- :class:`Cmds`: commands of one slot (a meta update, an XACK alone);
- :class:`Logged`: a data entry (the per-chunk hot path) and its firehose event;
- :class:`Final`: a stream's end: its terminal entry with the meta totals and expiry, the ZREM
  from the active set (another slot), its firehose event, and ``after``, the request's XACK,
  which must follow that firehose event.

A single flusher task takes everything pending and hands it to :meth:`Link.execute
<fakeai.streams.log.Link.execute>` as command groups, then the next batch. The firehose events
of a batch go out as one batch entry per partition (:mod:`.firehose`), after the batch's own
commands and before the ``after`` commands of its :class:`Final` items. Chunks of many streams
that fall due together therefore share a round trip (one per node on a cluster), which is where
the producer's throughput comes from (a pipeline of 100 XADDs costs ~17 µs per command against
~111 µs for an awaited XADD each; project notes, redis-faststream §1.9). Replies come back raw
(no redis-py reply callbacks): only errors matter here.

Contracts:

- Order: a stream's keys share one slot, and ``Link.execute`` keeps the order of the groups of
  one slot (one connection per node), so a stream's entries land in seq order; firehose events
  keep their put order within a stream. A terminal entry's XACK runs only after the terminal
  XADD and after the firehose entry that carries its event (a request is never acknowledged
  before the metrics consumer can see its end): on a single server everything goes in ONE
  ``execute`` (one connection, in order); on a cluster the XACKs (another slot, maybe another
  node) go in a second ``execute`` once the first has returned.
- Backpressure: at most ``max_pending`` items wait; :meth:`put` awaits room beyond that (only
  while Redis is slow or down). :meth:`put_nowait` is the synchronous fast path for callers
  that put many items: it returns False instead of waiting.
- Redis down: a stage of a batch is retried with exponential backoff (cap ~2 s) until Redis
  returns; nothing is dropped. So is a stage that a cluster still answered with redirections
  (MOVED, ASK, TRYAGAIN, CLUSTERDOWN) once ``Link`` stopped re-sending them (a failover that
  takes longer than its deadline). A retried stage may re-send commands that had already run.
  That is harmless by construction: log entries have deterministic ids, so Redis rejects the
  copy ("ERR The ID specified in XADD is equal or smaller than the target stream top item",
  https://redis.io/docs/latest/commands/xadd/; :func:`~fakeai.streams.log.is_duplicate_id`),
  and that one error is ignored; hash writes, EXPIRE, PERSIST, ZREM and XACK are idempotent.
  Firehose entries (auto ids) can be duplicated: the firehose is at-least-once, like any
  consumer group (its consumers drop events whose seq they have seen).
- Durability: :meth:`write` returns once the item's batch was executed (the stream task uses
  it for its terminal entry only, before the request is acknowledged).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TypeAlias

import msgspec
from redis.exceptions import ResponseError

from fakeai.services.backoff import RETRYABLE, Backoff
from fakeai.services.producer.firehose import Firehose, FirehoseBatch, StreamHead
from fakeai.streams.log import Group, Link, is_duplicate_id, is_redirect

__all__ = ["Cmds", "Final", "Item", "LogWriter", "Logged", "WriteFailed"]

logger = logging.getLogger(__name__)


class Cmds(msgspec.Struct, frozen=True, gc=False):
    """``n`` commands of one slot, in the Redis protocol."""

    slot: int
    packed: bytes
    n: int


class Logged(msgspec.Struct, frozen=True, gc=False):
    """A data entry: its commands (the stream's slot) and its firehose event."""

    slot: int
    packed: bytes
    n: int
    stream: StreamHead
    event: bytes


class Final(msgspec.Struct, frozen=True, gc=False):
    """A stream's end: ``cmds`` and ``active``, its firehose ``event``, then ``after``
    (behind the firehose)."""

    cmds: Cmds
    """The terminal entry, the meta totals, EXPIRE or PERSIST (the stream's slot)."""
    active: Cmds
    """ZREM from the active set (its own slot)."""
    stream: StreamHead
    event: bytes
    after: Cmds
    """The request's XACK."""


Item: TypeAlias = Cmds | Logged | Final
"""What :meth:`LogWriter.put` takes."""

_Batch: TypeAlias = list[tuple[Item, "asyncio.Future[None] | None"]]


class WriteFailed(Exception):
    """Redis rejected a command of an item with an error other than a duplicate entry id."""


class _Redirected(Exception):
    """Groups a cluster still redirected when ``Link`` gave up re-sending them."""


_RETRY: tuple[type[BaseException], ...] = (*RETRYABLE, _Redirected)


class LogWriter:
    """The per-process write coalescer (see the module docstring)."""

    def __init__(
        self,
        link: Link,
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
        self.link = link
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
        """Batches sent (for figures and tests)."""
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

    async def put(self, item: Item) -> None:
        """Queue ``item``; returns at once unless ``max_pending`` items already wait."""
        while len(self._ops) >= self._max_pending:
            self._room.clear()
            await self._room.wait()
        self._ops.append((item, None))
        self._wake.set()

    async def write(self, item: Item) -> None:
        """Queue ``item`` and wait until its batch has been executed by Redis.

        Raises :class:`WriteFailed` if Redis refused one of its commands (a duplicate id is
        not a failure); a refused firehose entry or ``after`` command of a :class:`Final` is
        logged.
        """
        while len(self._ops) >= self._max_pending:
            self._room.clear()
            await self._room.wait()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ops.append((item, fut))
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
            logger.warning("writer: %d items not flushed at shutdown (Redis down?)", self.pending)
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
        groups, bounds, afters = self._assemble(batch)
        if self.link.cluster and afters:
            # The XACKs may live on another node: only once the first stage has returned is
            # its firehose entry known to be written.
            results, failed = await self._execute(groups)
            acks, failed_acks = await self._execute(afters)
            results += acks
            failed = failed or failed_acks
        else:
            results, failed = await self._execute(groups + afters)
        self.batches += 1
        self.commands += len(results)
        if not failed:  # the common case: no error to attribute
            for _, fut in batch:
                if fut is not None and not fut.done():
                    fut.set_result(None)
            return
        start = 0
        for (_, fut), end in zip(batch, bounds, strict=True):
            error = next(
                (
                    r
                    for r in results[start:end]
                    if isinstance(r, ResponseError) and not is_duplicate_id(r)
                ),
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
        for error in results[start:]:
            if isinstance(error, ResponseError):
                logger.error("writer: Redis refused a firehose or ack command: %s", error)

    def _assemble(self, batch: _Batch) -> tuple[list[Group], list[int], list[Group]]:
        """``(groups, bounds, afters)``: the items' command groups and then the firehose's;
        each item's end index in the reply list; the ``after`` groups of :class:`Final`
        items."""
        groups: list[Group] = []
        append = groups.append
        bounds: list[int] = []
        mark = bounds.append
        events = FirehoseBatch()
        add_event = events.add
        afters: list[Group] = []
        n = 0
        for item, _ in batch:
            match item:
                case Logged():
                    append((item.slot, item.packed, item.n))
                    add_event(item.stream, item.event)
                    n += item.n
                case Cmds():
                    append((item.slot, item.packed, item.n))
                    n += item.n
                case Final(cmds=cmds, active=active, after=after):
                    append((cmds.slot, cmds.packed, cmds.n))
                    append((active.slot, active.packed, active.n))
                    add_event(item.stream, item.event)
                    afters.append((after.slot, after.packed, after.n))
                    n += cmds.n + active.n
            mark(n)
        if events:
            groups += self._firehose.groups(events)
        return groups, bounds, afters

    async def _execute(self, groups: list[Group]) -> tuple[list[Any], bool]:
        """``Link.execute`` of one stage, retried while Redis is unreachable or a cluster
        still redirects (see the module docstring); ``(replies, any error reply)``."""
        backoff = Backoff(cap_s=self._backoff_cap_s)
        while True:
            try:
                results = await self.link.execute(groups)
                errors = [r for r in results if isinstance(r, ResponseError)]
                redirect = next((r for r in errors if is_redirect(r)), None)
                if redirect is not None:
                    raise _Redirected(redirect)
            except _RETRY as e:
                if backoff.failures == 0:
                    logger.warning(
                        "writer: Redis unavailable (%s); retrying %d command groups", e, len(groups)
                    )
                await backoff.sleep()
                continue
            except Exception:
                # The flusher must outlive anything: if it died, every stream of this
                # producer would stall with no error. Retrying is safe (see the docstring).
                if backoff.failures == 0:
                    logger.exception("writer: unexpected failure; retrying %d groups", len(groups))
                await backoff.sleep()
                continue
            if backoff.failures:
                logger.info("writer: Redis is back after %d retries", backoff.failures)
            return results, bool(errors)
