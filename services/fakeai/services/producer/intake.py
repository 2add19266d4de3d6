"""Request intake: FastStream reads ``Keys.requests()`` in group ``producers``; we ack by hand.

Reading (FastStream ``RedisBroker`` + ``StreamSub(batch=True, max_records=N)``):

- The group is created here, ``XGROUP CREATE <requests> producers 0 MKSTREAM`` (BUSYGROUP
  ignored), before the broker starts, and ``last_id`` keeps its default: FastStream would
  otherwise create the group at ``$`` (missing requests published before the first producer
  started) or busy-loop re-reading its own PEL (ag2ai/faststream#2694; project notes,
  redis-faststream §1.1).
- Batch mode hands the handler the raw entries (``msg.raw_message["data"]``, a list of field
  dicts aligned with ``message_ids``); field ``r`` is decoded by the service with msgspec.
- Ack policy MANUAL: a request is acknowledged (XACK, in the writer's pipeline right after its
  terminal entry) only once its stream has ended, so the requests of a producer that dies stay
  pending and are taken over.
- Each process uses a unique consumer name (host-pid-random): one name is one PEL.

Failover (raw redis-py, every ``heartbeat_s``):

- ``XCLAIM <ids> JUSTID`` with min idle 0 of every request held here resets their idle time,
  so no live producer's request looks abandoned (JUSTID does not bump the delivery count,
  https://redis.io/docs/latest/commands/xclaim/);
- ``XAUTOCLAIM`` with min idle ``reclaim_idle_s`` takes over requests idle for longer, i.e.
  held by a producer that stopped refreshing them (dead), up to this producer's free slots;
  ids the reply lists as deleted (trimmed away) are acked.

FastStream's built-in claimer (``min_idle_time``) is not used: it claims one entry per round
trip and would also steal requests from live producers whose streams outlast the idle time.

Redis outages: start-up retries until Redis answers; FastStream's read loop retries on its
own. If Redis comes back without the group (a server restarted without persistence),
FastStream stops the subscriber for good (NOGROUP); the keep-alive then recreates the group and
restarts the subscriber, so the producer recovers without a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aredis
from faststream import AckPolicy
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.annotations import RedisBatchStreamMessage
from redis.exceptions import ResponseError

from fakeai.services.producer.backoff import RETRYABLE, Backoff, raise_if_cancelling
from fakeai.streams import PRODUCERS_GROUP, Keys

__all__ = ["RawRequest", "RequestIntake", "ensure_group"]

logger = logging.getLogger(__name__)

RawRequest = tuple[bytes, dict[bytes, bytes]]
"""One entry of the requests stream: (entry id, fields)."""

Submit = Callable[[list[RawRequest]], Awaitable[None]]


async def ensure_group(redis: aredis.Redis, keys: Keys) -> None:
    """Create the producers group at ``0`` (all existing requests), unless it exists."""
    try:
        await redis.xgroup_create(keys.requests(), PRODUCERS_GROUP, id="0", mkstream=True)
    except ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


class RequestIntake:
    """Delivers requests to ``submit`` (which may await free slots: that is backpressure).

    ``submit`` receives every request once per delivery to this process; :attr:`held` holds
    the ids delivered and not yet :meth:`release`-d (acked), and is what the keep-alive
    refreshes.
    """

    def __init__(
        self,
        url: str,
        redis: aredis.Redis,
        keys: Keys,
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
        self._redis = redis
        self._keys = keys
        self.consumer = consumer
        self._submit = submit
        self._free_slots = free_slots
        self._heartbeat_s = heartbeat_s
        self._reclaim_idle_ms = int(reclaim_idle_s * 1000)
        self.held: set[bytes] = set()
        self._accepting = False
        self._closing = False
        self._keepalive_task: asyncio.Task[None] | None = None
        # logger=None: no per-message access log, which costs more than the handling itself
        # (project notes, redis-faststream §1.7); the stub does not admit None.
        self._broker = RedisBroker(url, logger=None)  # type: ignore[arg-type]
        self._sub = self._broker.subscriber(
            stream=StreamSub(
                keys.requests(),
                group=PRODUCERS_GROUP,
                consumer=consumer,
                batch=True,
                max_records=batch,
                polling_interval=polling_ms,
            ),
            ack_policy=AckPolicy.MANUAL,
        )

        async def handle(msg: RedisBatchStreamMessage) -> None:
            raw: Any = msg.raw_message
            await self._deliver(list(zip(raw["message_ids"], raw["data"], strict=True)))

        self._sub(handle)

    async def start(self) -> None:
        """Create the group and start reading; retries until Redis answers."""
        backoff = Backoff()
        while True:
            try:
                await ensure_group(self._redis, self._keys)
                await self._broker.start()
                break
            except RETRYABLE as e:
                if backoff.failures == 0:
                    logger.warning("intake: Redis unavailable at start (%s); retrying", e)
                await self._broker.stop()
                await backoff.sleep()
        self._accepting = True
        self._keepalive_task = asyncio.get_running_loop().create_task(
            self._keepalive(), name="producer-keepalive"
        )
        logger.info("intake: consumer %s reading %s", self.consumer, self._keys.requests())

    async def stop_intake(self) -> None:
        """Stop reading and reclaiming new requests (held ones stay refreshed)."""
        self._accepting = False
        await self._broker.stop()

    async def close(self) -> None:
        """Stop everything, including the keep-alive of held requests."""
        self._closing = True
        if self._accepting:
            await self.stop_intake()
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
            await asyncio.gather(self._keepalive_task, return_exceptions=True)

    def release(self, msg_id: bytes) -> None:
        """The request was acknowledged: stop refreshing it."""
        self.held.discard(msg_id)

    async def _deliver(self, entries: list[RawRequest]) -> None:
        if not self._accepting:
            return  # read while stopping: left pending, another producer takes them over
        fresh = [(i, f) for i, f in entries if i not in self.held]
        self.held.update(i for i, _ in fresh)
        if fresh:
            await self._submit(fresh)

    async def _keepalive(self) -> None:
        backoff = Backoff()
        while not self._closing:
            try:
                await self._refresh()
                if self._accepting:
                    await self._reclaim()
                await self._ensure_subscriber()
            except RETRYABLE as e:
                if backoff.failures == 0:
                    logger.warning("intake keep-alive: Redis unavailable (%s); retrying", e)
                await backoff.sleep()
                continue
            except ResponseError as e:
                if "NOGROUP" not in str(e):
                    raise
                logger.warning("intake: group %s is gone; recreating it", PRODUCERS_GROUP)
                await ensure_group(self._redis, self._keys)
                continue
            backoff.reset()
            raise_if_cancelling()
            await asyncio.sleep(self._heartbeat_s)

    async def _refresh(self) -> None:
        if self.held:
            await self._redis.xclaim(
                self._keys.requests(),
                PRODUCERS_GROUP,
                self.consumer,
                min_idle_time=0,
                message_ids=list(self.held),
                justid=True,
            )

    async def _reclaim(self) -> None:
        start: bytes | str = "0-0"
        while self._accepting and (free := self._free_slots()) > 0:
            reply = await self._redis.xautoclaim(
                self._keys.requests(),
                PRODUCERS_GROUP,
                self.consumer,
                min_idle_time=self._reclaim_idle_ms,
                start_id=start,
                count=min(free, 100),
            )
            next_id, claimed = reply[0], reply[1]
            deleted = reply[2] if len(reply) > 2 else []
            if deleted:
                await self._redis.xack(self._keys.requests(), PRODUCERS_GROUP, *deleted)
            entries = [(i, f) for i, f in claimed if f is not None]
            if entries:
                logger.info("intake: took over %d abandoned request(s)", len(entries))
                await self._deliver(entries)
            if next_id in (b"0-0", "0-0"):
                return
            start = next_id

    async def _ensure_subscriber(self) -> None:
        # Re-check _accepting after every await: stop_intake() may run in between, and a
        # subscriber restarted after the broker stopped would read on with nobody to stop it.
        if self._accepting and not self._sub.running:
            await ensure_group(self._redis, self._keys)
            if self._accepting and not self._sub.running:
                logger.warning("intake: restarting the request subscriber")
                await self._sub.start()
