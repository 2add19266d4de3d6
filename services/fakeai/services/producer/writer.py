"""Write coalescing: one flusher per process sends the writes of every stream in pipelines.

Streams never await Redis per chunk. They :meth:`LogWriter.put` an *item* (:mod:`.items`) and
go on. Items are commands already in the Redis protocol (packed with :mod:`fakeai.streams.log`'s
packers by :mod:`.records`), each tagged with the cluster slot of its keys:

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
- Redis out of memory (``maxmemory`` with ``noeviction``: XADD and HSET answer "OOM command
  not allowed"; XACK, ZREM, EXPIRE and DEL still run; https://redis.io/docs/latest/develop/
  reference/eviction/): a stage with an OOM reply is retried, whole and in order, with a
  backoff capped at 0.5 s, for up to ``oom_retry_s`` counted from the first OOM reply of the
  episode (one shared deadline, so a full Redis stalls the writer once, not once per batch). A
  short episode thus costs a pause, not a stream. Past the deadline the refusals stand: a
  :meth:`write` raises :class:`WriteFailed` (``oom`` True), and a stream whose data entry was
  refused is listed in :attr:`LogWriter.refused`; its later data entries are dropped, never
  sent, so the log never gets an entry after a hole once memory is freed (Redis runs a pipeline
  read in one go without freeing memory in between, so within a stage a refusal is not followed
  by an accepted entry of the same stream). The stream's task sees the listing and ends the
  stream (``redis_full``). For a minute after an OOM reply the XACKs of a batch go in a second
  stage, sent only for streams whose terminal entry was written: a request is never
  acknowledged while its end is missing. (The first OOM batch of an episode on a single server
  carries its XACKs in its one round trip; the stream's task then writes its end again until
  Redis takes it.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, TypeAlias

from redis.exceptions import ResponseError

from fakeai.services.backoff import RETRYABLE, Backoff
from fakeai.services.producer.firehose import Firehose, FirehoseBatch, StreamHead
from fakeai.services.producer.items import Cmds, Final, Item, Logged, WriteFailed, is_oom
from fakeai.streams.log import Group, Link, is_duplicate_id, is_redirect

__all__ = ["Cmds", "Final", "Item", "LogWriter", "Logged", "WriteFailed", "is_oom"]

logger = logging.getLogger(__name__)


_Batch: TypeAlias = list[tuple[Item, "asyncio.Future[None] | None"]]


_TWO_STAGE_AFTER_OOM_S = 60.0
"""How long after an OOM reply the XACKs of a batch wait for its terminal entries (a second
round trip on a single server)."""


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
        oom_retry_s: float = 3.0,
    ) -> None:
        if max_pending < 1 or max_batch < 1:
            raise ValueError(
                f"max_pending and max_batch must be >= 1; got {max_pending}, {max_batch}"
            )
        # Checked here, not at the first retry: a Backoff refused inside the flusher would
        # kill it, and every later write would wait forever.
        Backoff(cap_s=backoff_cap_s)
        self.link = link
        self._firehose = firehose or Firehose()
        self._max_pending = max_pending
        self._max_batch = max_batch
        self._backoff_cap_s = backoff_cap_s
        self._oom_retry_s = oom_retry_s
        self._oom_since: float | None = None
        """When the current out-of-memory episode began (monotonic), None outside one."""
        self._oom_at = -_TWO_STAGE_AFTER_OOM_S
        """The last OOM reply (monotonic)."""
        self.refused: dict[StreamHead, WriteFailed] = {}
        """Streams (by :attr:`Logged.stream`) a data entry of which Redis refused for good,
        with the error; their later data entries are dropped. The stream's task ends the
        stream and then :meth:`forget`-s it."""
        self._ops: _Batch = []
        self._sending: _Batch = []
        """The batch the flusher is executing (retrying, while Redis is away)."""
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

    @property
    def max_pending(self) -> int:
        return self._max_pending

    async def below(self, limit: int) -> None:
        """Return once fewer than ``limit`` items wait (at once if they already do): a stream
        that makes chunks faster than Redis takes them waits here, so it never holds the
        whole queue (the hard bound of :meth:`put`) against the others."""
        while len(self._ops) >= limit:
            self._room.clear()
            await self._room.wait()

    def forget(self, stream: StreamHead) -> None:
        """The stream has ended: drop it from :attr:`refused`."""
        self.refused.pop(stream, None)

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
            logger.warning(
                "writer: %d items not flushed at shutdown (Redis down?)",
                len(self._sending) + len(self._ops),
            )
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        # Every waiting write() ends: those of the batch the flusher was retrying too.
        for _, fut in self._sending + self._ops:
            if fut is not None and not fut.done():
                fut.cancel()
        self._sending = []
        self._ops.clear()

    async def _run(self) -> None:
        while True:
            if not self._ops:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._sending = self._ops[: self._max_batch]
            del self._ops[: self._max_batch]
            self._room.set()
            await self._send(batch)
            self._sending = []

    async def _send(self, batch: _Batch) -> None:
        groups, bounds, afters, owners = self._assemble(batch)
        acks: list[Any] = []
        if afters and (self.link.cluster or self._oom_recently()):
            # The XACKs may live on another node, or Redis refuses writes: only once the
            # first stage has returned is each terminal entry (and its firehose entry) known
            # to be written, and only those requests are acknowledged.
            results, failed = await self._execute(groups, data=True)
            errors = _item_errors(bounds, results) if failed else {}
            keep = [g for g, i in zip(afters, owners, strict=True) if i not in errors]
            if keep:
                acks, failed_acks = await self._execute(keep, data=False)
                failed = failed or failed_acks
        else:
            results, failed = await self._execute(groups + afters, data=True)
            errors = _item_errors(bounds, results) if failed else {}
        self.batches += 1
        self.commands += len(results) + len(acks)
        if not errors:  # the common case: every item written
            for _, fut in batch:
                if fut is not None and not fut.done():
                    fut.set_result(None)
        else:
            logger.error(
                "writer: Redis refused %d of %d items (the first: %s)",
                len(errors),
                len(batch),
                next(iter(errors.values())),
            )
            for i, (item, fut) in enumerate(batch):
                error = errors.get(i)
                if error is not None and isinstance(item, Logged):
                    self.refused.setdefault(item.stream, WriteFailed(str(error), oom=is_oom(error)))
                if fut is not None and not fut.done():
                    if error is None:
                        fut.set_result(None)
                    else:
                        fut.set_exception(WriteFailed(str(error), oom=is_oom(error)))
        if failed:
            others = [
                r
                for r in results[bounds[-1] if bounds else 0 :] + acks
                if isinstance(r, ResponseError)
            ]
            if others:
                logger.error(
                    "writer: Redis refused %d firehose or ack commands (the first: %s)",
                    len(others),
                    others[0],
                )

    def _assemble(self, batch: _Batch) -> tuple[list[Group], list[int], list[Group], list[int]]:
        """``(groups, bounds, afters, owners)``: the items' command groups and then the
        firehose's; each item's end index in the reply list; the ``after`` groups of
        :class:`Final` items, and the index in ``batch`` of the item each belongs to.

        A data entry of a stream listed in :attr:`refused` is dropped (its future, if any,
        fails): sent after a refused one, it would leave a hole in the log."""
        groups: list[Group] = []
        append = groups.append
        bounds: list[int] = []
        mark = bounds.append
        events = FirehoseBatch()
        add_event = events.add
        afters: list[Group] = []
        owners: list[int] = []
        refused = self.refused
        n = 0
        for i, (item, fut) in enumerate(batch):
            match item:
                case Logged():
                    if refused and item.stream in refused:
                        if fut is not None and not fut.done():
                            fut.set_exception(refused[item.stream])
                    else:
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
                    owners.append(i)
                    n += cmds.n + active.n
            mark(n)
        if events:
            groups += self._firehose.groups(events)
        return groups, bounds, afters, owners

    def _oom_recently(self) -> bool:
        return time.monotonic() - self._oom_at < _TWO_STAGE_AFTER_OOM_S

    async def _execute(self, groups: list[Group], *, data: bool) -> tuple[list[Any], bool]:
        """``Link.execute`` of one stage, retried while Redis is unreachable, a cluster still
        redirects, or Redis is out of memory and the episode's deadline has not passed (see
        the module docstring); ``(replies, any error reply)``. ``data``: the stage writes
        entries (its success ends an out-of-memory episode; a stage of XACKs alone does not
        tell, XACK runs under OOM)."""
        if not groups:  # every item of the batch was dropped
            return [], False
        backoff = Backoff(cap_s=self._backoff_cap_s)
        oom_backoff = Backoff(cap_s=0.5)
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
                backoff.reset()
            oom = next((r for r in errors if is_oom(r)), None)
            if oom is None:
                if data and self._oom_since is not None:
                    logger.warning(
                        "writer: Redis accepts writes again after %.1f s out of memory",
                        time.monotonic() - self._oom_since,
                    )
                    self._oom_since = None
                return results, bool(errors)
            now = self._oom_at = time.monotonic()
            if self._oom_since is None:
                self._oom_since = now
                logger.error(
                    "writer: Redis is out of memory (%s); retrying for up to %.1f s, then the "
                    "streams whose writes it refuses end with 'redis_full'",
                    oom,
                    self._oom_retry_s,
                )
            if now - self._oom_since >= self._oom_retry_s:
                return results, True
            await oom_backoff.sleep()


def _item_errors(bounds: list[int], results: list[Any]) -> dict[int, Exception]:
    """Per item (index in ``batch``), the first error reply of its commands that is not a
    duplicate entry id; an item that was dropped (:attr:`refused`) has a bound equal to
    its predecessor's and no replies."""
    errors: dict[int, Exception] = {}
    start = 0
    for i, end in enumerate(bounds):
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
            errors[i] = error
    return errors
