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

Failover (taking over the requests of dead producers, keeping this producer's own requests
from looking abandoned) is :mod:`.failover`'s; it delivers what it takes over through
:meth:`RequestIntake.deliver`, with Redis's delivery count of each request.
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
    deliveries: int = 1
    """How many times Redis has handed it out, this time included (its PEL delivery count;
    1 for a first read with ``>``)."""


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
        polling_ms: int = 500,
    ) -> None:
        if not partitions:
            raise ValueError("need at least one requests partition")
        if batch < 1 or polling_ms < 1:
            raise ValueError(f"need batch >= 1 and polling_ms >= 1; got {batch}, {polling_ms}")
        self._link = link
        self._redis: RedisClient = link.client
        self.partitions = list(partitions)
        self.consumer = consumer
        self._submit = submit
        self.held: dict[str, set[bytes]] = {key: set() for key in self.partitions}
        self._accepting = False
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
        for key in self.partitions:
            self._start_reader(key)
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
                    await self.deliver(entries)
        finally:
            if reader is not None:
                await reader.close()

    @property
    def accepting(self) -> bool:
        """Requests are being read (and may be taken over): between start and stop."""
        return self._accepting

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
        """Stop reading (if not yet)."""
        if self._accepting:
            await self.stop_intake()

    def release(self, key: str, msg_id: bytes) -> None:
        """The request was acknowledged: stop refreshing it."""
        held = self.held.get(key)
        if held is not None:
            held.discard(msg_id)

    async def deliver(self, entries: list[Delivered]) -> None:
        """Hand ``entries`` to ``submit``, but those held here already (and nothing once
        stopping: left pending, another producer takes them over)."""
        if not self._accepting:
            return
        fresh = []
        for entry in entries:
            held = self.held.setdefault(entry.key, set())
            if entry.msg_id not in held:
                held.add(entry.msg_id)
                fresh.append(entry)
        if fresh:
            await self._submit(fresh)

    def ensure_reader(self, key: str) -> None:
        """Restart the read task of ``key`` if it ended (it only ends on a bug: logged)."""
        task = self._readers.get(key)
        if self._accepting and task is not None and task.done():
            if not task.cancelled() and task.exception() is not None:
                logger.error("intake: the reader of %s failed; restarting it", key,
                             exc_info=task.exception())  # fmt: skip
            self._start_reader(key)

    def _log_failure(self, key: str, e: BaseException) -> None:
        """Log an unexpected failure with its traceback, once per kind; later ones at DEBUG."""
        kind = (type(e).__qualname__, str(e).split(" ", 1)[0])
        if kind in self._logged_failures:
            logger.debug("intake: reading %s failed again: %s", key, e)
            return
        self._logged_failures.add(kind)
        logger.error(
            "intake: unexpected failure reading %s (logged once per kind; reading goes on)",
            key,
            exc_info=e,
        )


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
