"""Failover: the requests of a dead producer continue on a live one.

A producer holds a request from its delivery to its XACK (after the stream's terminal entry),
so the requests of a producer that dies stay pending in group ``producers``, under its
consumer name. Two rules hand them to a survivor:

1. **Lease** (fast; issue 10, finding 8: a SIGKILLed producer's clients waited ~16 s). Every
   ``lease_s / 3`` (``settings.producer_lease_s``) each producer looks for lapsed leases in
   ``Keys.producers()`` (:mod:`.lease`). For each, the one survivor whose :meth:`Lease.claim`
   succeeds lists the dead consumer's pending requests partition by partition (``XPENDING
   <partition> producers - + <count> <consumer>``, extended form: ids and delivery counts) and
   ``XCLAIM``-s them with min idle 0, up to its free slots; a rest it cannot take goes back
   into the set (:meth:`Lease.give_back`) for the next turn. A SIGKILLed producer's streams
   thus go on between ``lease_s * 2/3`` and ``lease_s * 4/3`` after its death (its last
   renewal, the lapse, then the next look): 1.3 to 2.7 s at the default 2 s; 1.7 s measured
   by ``test_sigkilled_producer_streams_continue_on_a_survivor_at_once_by_its_lease``
   (``tests/integration/producer/test_producer_failover.py``, which prints the figure).
2. **Idle time** (the fallback, for producers of older versions that keep no lease, and for a
   take-over that died half-way): every ``heartbeat_s``, ``XAUTOCLAIM`` with min idle
   ``reclaim_idle_s`` takes requests idle for longer, up to the free slots; ids the reply lists
   as deleted (trimmed away) are acked.

Keep-alive (every ``heartbeat_s``): ``XCLAIM <ids> JUSTID`` with min idle 0 of every request
held here resets their idle time, so no live producer's request looks abandoned to rule 2
(JUSTID does not bump the delivery count, https://redis.io/docs/latest/commands/xclaim/).

Delivery count: ``XCLAIM`` and ``XAUTOCLAIM`` (without JUSTID) add one to a request's count of
deliveries; rule 1 reads the counts before claiming, rule 2 after (``XPENDING`` of the claimed
range). Each request reaches :meth:`RequestIntake.deliver` with its count, and the stream task
parks a request handed out more than ``settings.max_deliveries`` times (:mod:`.ending`).

A partition that is unreachable does not stop the work on the others. Any unexpected error is
logged with its traceback once per kind (issue 9: the keep-alive used to die on one, silently,
and its requests stayed pending), and the loops go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ResponseError

from fakeai.services.backoff import RETRYABLE, Backoff, is_nogroup, raise_if_cancelling
from fakeai.services.producer.intake import Delivered, RequestIntake
from fakeai.services.producer.lease import Lease
from fakeai.streams import PRODUCERS_GROUP
from fakeai.streams.client import RedisClient
from fakeai.streams.log import ensure_group

__all__ = ["Failover"]

logger = logging.getLogger(__name__)


class Failover:
    """The keep-alive, the idle-time take-over and the lease take-over of one producer."""

    def __init__(
        self,
        redis: RedisClient,
        intake: RequestIntake,
        lease: Lease,
        *,
        free_slots: Callable[[], int],
        heartbeat_s: float = 3.0,
        reclaim_idle_s: float = 15.0,
    ) -> None:
        if not 0 < heartbeat_s < reclaim_idle_s:
            raise ValueError(
                f"need 0 < heartbeat_s < reclaim_idle_s; got heartbeat_s={heartbeat_s}, "
                f"reclaim_idle_s={reclaim_idle_s}"
            )
        self._redis = redis
        self._intake = intake
        self._lease = lease
        self._free_slots = free_slots
        self._heartbeat_s = heartbeat_s
        self._reclaim_idle_ms = int(reclaim_idle_s * 1000)
        self._tasks: list[asyncio.Task[None]] = []
        self._logged_failures: set[tuple[str, str]] = set()
        self.taken_over = 0
        """Requests taken over from producers whose lease lapsed (for tests and figures)."""

    @property
    def consumer(self) -> str:
        return self._intake.consumer

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._keepalive(), name="producer-keepalive"),
            loop.create_task(self._watch_leases(), name="producer-lease-watch"),
        ]

    @property
    def running(self) -> bool:
        """Both loops run (for health checks and tests)."""
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def holding(self) -> bool:
        """Requests are pending under this producer's name (read, not acknowledged)."""
        for key in self._intake.partitions:
            rows: Any = await self._redis.xpending_range(
                key, PRODUCERS_GROUP, min="-", max="+", count=1, consumername=self.consumer
            )
            if rows:
                return True
        return False

    # -- the loops ---------------------------------------------------------------------------

    async def _keepalive(self) -> None:
        """Every ``heartbeat_s``, per partition: refresh, rule 2, and the reader's health."""
        steps: tuple[Callable[[str], Awaitable[None]], ...] = (
            self._refresh,
            self._reclaim,
            self._ensure_reader,
        )
        await self._every(self._heartbeat_s, "keep-alive", self._intake.partitions, steps)

    async def _watch_leases(self) -> None:
        """Every ``lease_s / 3``: rule 1."""
        steps: tuple[Callable[[str], Awaitable[None]], ...] = (self._take_over_lapsed,)
        await self._every(self._lease.interval_s, "lease watch", [""], steps)

    async def _every(
        self,
        interval_s: float,
        name: str,
        keys: list[str],
        steps: tuple[Callable[[str], Awaitable[None]], ...],
    ) -> None:
        backoff = Backoff()
        while True:
            unavailable: BaseException | None = None
            for key in keys:
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
                    logger.warning("%s: Redis unavailable (%s); retrying", name, unavailable)
                await backoff.sleep()
                continue
            if backoff.failures:
                logger.info("%s: Redis is back after %d retries", name, backoff.failures)
            backoff.reset()
            raise_if_cancelling()
            await asyncio.sleep(interval_s)

    async def _recover(self, key: str, e: Exception) -> bool:
        """After a step on ``key`` failed with ``e``: recreate a missing group (NOGROUP, True:
        go on with the partition's next step), else log ``e`` (False: skip this partition until
        the next turn)."""
        if key and is_nogroup(e):
            logger.warning("failover: group %s of %s is gone; recreating it", PRODUCERS_GROUP, key)
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
            logger.debug("failover: %s failed again: %s", key or "lease watch", e)
            return
        self._logged_failures.add(kind)
        logger.error(
            "failover: unexpected failure on %s (logged once per kind; failover goes on)",
            key or "the producers' leases",
            exc_info=e,
        )

    # -- keep-alive and rule 2 ---------------------------------------------------------------

    async def _refresh(self, key: str) -> None:
        """Reset the idle time of the requests of ``key`` held here."""
        held = self._intake.held.get(key)
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
        """Rule 2: take over requests of ``key`` idle for longer than ``reclaim_idle_s``."""
        start: bytes | str = "0-0"
        while self._intake.accepting and (free := self._free_slots()) > 0:
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
            claimed = [(i, f) for i, f in claimed if f is not None]
            if claimed:
                counts = await self._counts(key, [i for i, _ in claimed])
                entries = [Delivered(key, i, f, counts.get(i, 1)) for i, f in claimed]
                logger.info("failover: took over %d idle request(s) on %s", len(entries), key)
                await self._intake.deliver(entries)
            if next_id in (b"0-0", "0-0"):
                return
            start = next_id

    async def _counts(self, key: str, ids: list[bytes]) -> dict[bytes, int]:
        """The delivery counts of ``ids`` (pending here, in id order)."""
        rows: Any = await self._redis.xpending_range(
            key,
            PRODUCERS_GROUP,
            min=ids[0],
            max=ids[-1],
            count=len(ids) + len(self._intake.held.get(key, ())),
            consumername=self.consumer,
        )
        return {row["message_id"]: int(row["times_delivered"]) for row in rows}

    async def _ensure_reader(self, key: str) -> None:
        self._intake.ensure_reader(key)

    # -- rule 1 ------------------------------------------------------------------------------

    async def _take_over_lapsed(self, _: str) -> None:
        if not self._intake.accepting:
            return
        for dead, score in await self._lease.lapsed():
            if not self._intake.accepting or not await self._lease.claim(dead):
                continue  # stopping, or another survivor has it
            left = True
            try:
                left = await self._take_over(dead)
            finally:
                if left:
                    with contextlib.suppress(Exception):
                        await self._lease.give_back(dead, score)

    async def _take_over(self, dead: str) -> bool:
        """Claim ``dead``'s pending requests on every partition, up to the free slots; True if
        some are left."""
        left = False
        total = 0
        for key in self._intake.partitions:
            free = self._free_slots()
            rows: Any = await self._redis.xpending_range(
                key, PRODUCERS_GROUP, min="-", max="+", count=max(1, free) + 1, consumername=dead
            )
            if not rows:
                continue
            if len(rows) > free:
                left = True
                rows = rows[:free]
            if not rows:
                continue
            counts = {row["message_id"]: int(row["times_delivered"]) for row in rows}
            try:
                claimed: Any = await self._redis.xclaim(
                    key, PRODUCERS_GROUP, self.consumer, min_idle_time=0, message_ids=list(counts)
                )
            except ResponseError as e:
                if is_nogroup(e):
                    continue  # the group is gone, and the requests with it
                raise
            # XCLAIM adds one to each count; an entry deleted meanwhile is dropped from the PEL.
            entries = [
                Delivered(key, i, f, counts.get(i, 0) + 1) for i, f in claimed if f is not None
            ]
            if entries:
                total += len(entries)
                await self._intake.deliver(entries)
        self.taken_over += total
        logger.info(
            "failover: producer %s's lease lapsed; took over %d request(s)%s",
            dead,
            total,
            " (more left for the next turn)" if left else "",
        )
        return left
