"""Request intake: every producer reads every request partition in group ``producers``.

The requests stream is partitioned (``Keys.all_requests(settings.request_partitions)``, each
partition its own hash tag, so on a cluster they spread over the masters and no key carries
all requests).

Reading: one task per partition blocks in ``XREADGROUP GROUP producers <consumer> COUNT <batch>
BLOCK <polling_ms> STREAMS <partition> >`` on a dedicated connection to the partition's node
(:meth:`fakeai.streams.log.Link.reader`), and hands each batch to ``submit``, which may wait for
free slots (backpressure: nothing more is read meanwhile).

- The group is created on every partition at ``0`` (:func:`fakeai.streams.log.ensure_group`),
  so requests published before the first producer started are served too.
- Requests are acknowledged by hand (XACK on the partition they were read from, in the
  writer's flush right after their terminal entry) only once their stream has ended, so the
  requests of a producer that dies stay pending and are taken over.
- Each process uses a unique consumer name (host-pid-random): one name is one PEL per
  partition.
- A read that fails (Redis restarting, a cluster node failing over, a slot that moved) closes
  its connection, refreshes the slot map and retries with backoff (50 ms doubling to 2 s), so a
  partition is read again within about a second of its node being back. A group that vanished
  (NOGROUP: a Redis restarted without its data) is created again. Any other error is logged
  with its traceback once per kind, and the read goes on.

Why not FastStream's subscriber, as before: after a read error it sleeps a fixed 5 s
(``CONSUME_ERROR_BACKOFF_SECONDS``, faststream 0.7.8), so after a cluster failover new requests
waited 5 to 15 s for a producer (measured with ``tests/e2e/test_e2e_scale_out.py``), and it
stops for good on NOGROUP (ag2ai/faststream#2611). The loop it replaces is the one the metrics
consumer, the edge hub and the cancel listener already run.

Failover (every ``heartbeat_s``, partition by partition; held ids are tracked per partition,
since two partitions can hand out the same entry id):

- ``XCLAIM <ids> JUSTID`` with min idle 0 of every request held here resets their idle time,
  so no live producer's request looks abandoned (JUSTID does not bump the delivery count,
  https://redis.io/docs/latest/commands/xclaim/);
- ``XAUTOCLAIM`` with min idle ``reclaim_idle_s`` takes over requests idle for longer, i.e.
  held by a producer that stopped refreshing them (dead), up to this producer's free slots;
  ids the reply lists as deleted (trimmed away) are acked.

A partition that is unreachable does not stop the keep-alive of the others. Any unexpected
error is logged with its traceback once per kind (issue 9: the keep-alive used to die on one,
silently, and its requests stayed pending), and the keep-alive goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from fakeai.services.backoff import RETRYABLE, Backoff, is_nogroup, raise_if_cancelling
from fakeai.streams import PRODUCERS_GROUP
from fakeai.streams.client import RedisClient
from fakeai.streams.log import Link, Reader, ensure_group, is_redirect, pack_command

__all__ = ["Delivered", "RequestIntake"]

logger = logging.getLogger(__name__)

_READ_ERRORS: tuple[type[BaseException], ...] = (*RETRYABLE, ResponseError)


@dataclass(frozen=True, slots=True)
class Delivered:
    """One entry of a requests partition, delivered to this producer."""

    key: str
    """The partition it was read from (where it is acknowledged)."""
    msg_id: bytes
    fields: dict[bytes, bytes]


Submit = Callable[[list[Delivered]], Awaitable[None]]


class RequestIntake:
    """Delivers requests to ``submit`` (which may await free slots: that is backpressure).

    ``submit`` receives every request once per delivery to this process; :attr:`held` holds,
    per partition, the ids delivered and not yet :meth:`release`-d (acked), and is what the
    keep-alive refreshes.
    """

    def __init__(
        self,
        link: Link,
        partitions: list[str],
        *,
        consumer: str,
        batch: int,
        submit: Submit,
        free_slots: Callable[[], int],
        heartbeat_s: float = 3.0,
        reclaim_idle_s: float = 15.0,
        polling_ms: int = 500,
    ) -> None:
        if not 0 < heartbeat_s < reclaim_idle_s:
            raise ValueError(
                f"need 0 < heartbeat_s < reclaim_idle_s; got heartbeat_s={heartbeat_s}, "
                f"reclaim_idle_s={reclaim_idle_s}"
            )
        if not partitions:
            raise ValueError("need at least one requests partition")
        if batch < 1 or polling_ms < 1:
            raise ValueError(f"need batch >= 1 and polling_ms >= 1; got {batch}, {polling_ms}")
        self._link = link
        self._redis: RedisClient = link.client
        self.partitions = list(partitions)
        self.consumer = consumer
        self._submit = submit
        self._free_slots = free_slots
        self._heartbeat_s = heartbeat_s
        self._reclaim_idle_ms = int(reclaim_idle_s * 1000)
        self.held: dict[str, set[bytes]] = {key: set() for key in self.partitions}
        self._accepting = False
        self._closing = False
        self._keepalive_task: asyncio.Task[None] | None = None
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._logged_failures: set[tuple[str, str]] = set()
        # https://redis.io/docs/latest/commands/xreadgroup/ ; ">" = entries never delivered.
        self._reads = {key: _xreadgroup(key, consumer, batch, polling_ms) for key in partitions}

    async def start(self) -> None:
        """Create the groups and start reading; retries until Redis answers."""
        backoff = Backoff()
        while True:
            try:
                await ensure_group(self._redis, self.partitions, PRODUCERS_GROUP, "0")
                break
            except RETRYABLE as e:
                if backoff.failures == 0:
                    logger.warning("intake: Redis unavailable at start (%s); retrying", e)
                await backoff.sleep()
        self._accepting = True
        loop = asyncio.get_running_loop()
        for key in self.partitions:
            self._start_reader(key)
        self._keepalive_task = loop.create_task(self._keepalive(), name="producer-keepalive")
        logger.info(
            "intake: consumer %s reading %d request partitions",
            self.consumer,
            len(self.partitions),
        )

    def _start_reader(self, key: str) -> None:
        self._readers[key] = asyncio.get_running_loop().create_task(
            self._read(key), name=f"producer-intake-{key}"
        )

    async def _read(self, key: str) -> None:
        """Read ``key`` until :meth:`stop_intake` (see the module docstring)."""
        backoff = Backoff()
        reader: Reader | None = None
        command = self._reads[key]
        try:
            while self._accepting:
                raise_if_cancelling()
                try:
                    if reader is None:
                        reader = await self._link.reader(key)
                    reply: Any = await reader.call(command)
                except _READ_ERRORS as e:
                    if reader is not None:
                        await reader.close()
                        reader = None
                    if is_nogroup(e):
                        logger.warning("intake: group %s of %s is gone; recreating it",
                                       PRODUCERS_GROUP, key)  # fmt: skip
                        with contextlib.suppress(*RETRYABLE):
                            await ensure_group(self._redis, [key], PRODUCERS_GROUP, "0")
                    elif not isinstance(e, RETRYABLE) and not is_redirect(e):
                        self._log_failure(key, e)
                    elif backoff.failures == 0:
                        logger.warning("intake: reading %s failed (%s); retrying", key, e)
                    with contextlib.suppress(Exception):
                        await self._link.refresh()
                    await backoff.sleep()
                    continue
                if backoff.failures:
                    logger.info("intake: reading %s works again after %d retries", key,
                                backoff.failures)  # fmt: skip
                    backoff.reset()
                entries = _entries(key, reply)
                if entries:
                    await self._deliver(entries)
        finally:
            if reader is not None:
                await reader.close()

    @property
    def keepalive_running(self) -> bool:
        """The keep-alive task runs (for health checks and tests)."""
        task = self._keepalive_task
        return task is not None and not task.done()

    async def stop_intake(self) -> None:
        """Stop reading and reclaiming new requests (held ones stay refreshed).

        A read cancelled while blocked leaves its connection unusable (an unread reply may
        follow): the reader's connection is closed, never reused.
        """
        self._accepting = False
        readers = list(self._readers.values())
        self._readers.clear()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)

    async def close(self) -> None:
        """Stop everything, including the keep-alive of held requests."""
        self._closing = True
        if self._accepting:
            await self.stop_intake()
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
            await asyncio.gather(self._keepalive_task, return_exceptions=True)

    def release(self, key: str, msg_id: bytes) -> None:
        """The request was acknowledged: stop refreshing it."""
        held = self.held.get(key)
        if held is not None:
            held.discard(msg_id)

    async def _deliver(self, entries: list[Delivered]) -> None:
        if not self._accepting:
            return  # read while stopping: left pending, another producer takes them over
        fresh = []
        for entry in entries:
            held = self.held.setdefault(entry.key, set())
            if entry.msg_id not in held:
                held.add(entry.msg_id)
                fresh.append(entry)
        if fresh:
            await self._submit(fresh)

    # -- keep-alive --------------------------------------------------------------------------

    async def _keepalive(self) -> None:
        backoff = Backoff()
        steps = (self._refresh, self._reclaim, self._ensure_reader)
        while not self._closing:
            unavailable: BaseException | None = None
            for key in self.partitions:
                for step in steps:
                    raise_if_cancelling()
                    try:
                        await step(key)
                    except RETRYABLE as e:
                        unavailable = e  # other partitions may sit on other nodes: go on
                        break
                    except Exception as e:
                        if not await self._recover(key, e):
                            break
            if unavailable is not None:
                if backoff.failures == 0:
                    logger.warning(
                        "intake keep-alive: Redis unavailable (%s); retrying", unavailable
                    )
                await backoff.sleep()
                continue
            if backoff.failures:
                logger.info("intake keep-alive: Redis is back after %d retries", backoff.failures)
            backoff.reset()
            raise_if_cancelling()
            await asyncio.sleep(self._heartbeat_s)

    async def _recover(self, key: str, e: Exception) -> bool:
        """After a step on ``key`` failed with ``e``: recreate a missing group (NOGROUP, True:
        go on with the partition's next step), else log ``e`` (False: skip this partition until
        the next turn)."""
        if isinstance(e, ResponseError) and "NOGROUP" in str(e):
            logger.warning("intake: group %s of %s is gone; recreating it", PRODUCERS_GROUP, key)
            try:
                await ensure_group(self._redis, [key], PRODUCERS_GROUP, "0")
            except RETRYABLE:
                return False  # Redis went away meanwhile: the next turn tries again
            except Exception as e2:
                self._log_failure(key, e2)
                return False
            return True
        self._log_failure(key, e)
        return False

    def _log_failure(self, key: str, e: BaseException) -> None:
        """Log an unexpected failure with its traceback, once per kind; later ones at DEBUG."""
        kind = (type(e).__qualname__, str(e).split(" ", 1)[0])
        if kind in self._logged_failures:
            logger.debug("intake keep-alive: %s failed again: %s", key, e)
            return
        self._logged_failures.add(kind)
        logger.error(
            "intake keep-alive: unexpected failure on %s (logged once per kind; the keep-alive "
            "goes on)",
            key,
            exc_info=e,
        )

    async def _refresh(self, key: str) -> None:
        """Reset the idle time of the requests of ``key`` held here."""
        held = self.held.get(key)
        if held:
            await self._redis.xclaim(
                key,
                PRODUCERS_GROUP,
                self.consumer,
                min_idle_time=0,
                message_ids=list(held),
                justid=True,
            )

    async def _reclaim(self, key: str) -> None:
        """Take over requests of ``key`` abandoned by a dead producer, up to the free slots."""
        start: bytes | str = "0-0"
        while self._accepting and (free := self._free_slots()) > 0:
            reply: Any = await self._redis.xautoclaim(
                key,
                PRODUCERS_GROUP,
                self.consumer,
                min_idle_time=self._reclaim_idle_ms,
                start_id=start,
                count=min(free, 100),
            )
            next_id, claimed = reply[0], reply[1]
            deleted = reply[2] if len(reply) > 2 else []
            if deleted:
                await self._redis.xack(key, PRODUCERS_GROUP, *deleted)
            entries = [Delivered(key, i, f) for i, f in claimed if f is not None]
            if entries:
                logger.info("intake: took over %d abandoned request(s) on %s", len(entries), key)
                await self._deliver(entries)
            if next_id in (b"0-0", "0-0"):
                return
            start = next_id

    async def _ensure_reader(self, key: str) -> None:
        """Restart the read task of ``key`` if it ended (it only ends on a bug: logged)."""
        task = self._readers.get(key)
        if self._accepting and task is not None and task.done():
            if not task.cancelled() and task.exception() is not None:
                logger.error("intake: the reader of %s failed; restarting it", key,
                             exc_info=task.exception())  # fmt: skip
            self._start_reader(key)


def _xreadgroup(key: str, consumer: str, batch: int, block_ms: int) -> bytes:
    """``XREADGROUP GROUP producers <consumer> COUNT <batch> BLOCK <block_ms> STREAMS <key> >``
    (https://redis.io/docs/latest/commands/xreadgroup/; ``>``: entries never delivered)."""
    return pack_command(
        b"XREADGROUP", b"GROUP", PRODUCERS_GROUP.encode(), consumer.encode(),
        b"COUNT", b"%d" % batch, b"BLOCK", b"%d" % block_ms, b"STREAMS", key.encode(), b">",
    )  # fmt: skip


def _entries(key: str, reply: Any) -> list[Delivered]:
    """The entries of a raw XREADGROUP reply: a map ``{key: [[id, [field, value, ...]], ...]}``
    (RESP3), a list ``[[key, [[id, [...]], ...]]]`` (RESP2), or nil when the block timed out."""
    items = reply.items() if isinstance(reply, dict) else (reply or ())
    out = []
    for _, rows in items:
        for msg_id, flat in rows or ():
            if flat is None:  # an entry deleted while pending
                continue
            out.append(Delivered(key, msg_id, dict(zip(flat[::2], flat[1::2], strict=True))))
    return out
