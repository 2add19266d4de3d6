"""A producer's lease: how the others learn at once that it died.

``Keys.producers()`` is a sorted set of live producers: member = consumer name, score = lease
expiry in ms since the Unix epoch. Every producer renews its own lease (``ZADD``, score = now +
``lease_s``) every ``lease_s / 3`` from a task of its own, so a busy producer never looks dead,
and takes itself out at a clean shutdown (:meth:`Lease.leave`). A member whose score is in the
past belongs to a producer that stopped renewing: killed, frozen, or cut off from Redis.

Taking over a dead producer's requests (:mod:`.failover`) starts with :meth:`Lease.claim`, a
``ZREM`` of its member: Redis answers 1 to exactly one caller, so exactly one survivor takes
the dead producer's requests over, however many see its lease lapse at once. A survivor that
could not take them all (no free slots) puts the member back with its lapsed score
(:meth:`Lease.give_back`), for the next turn of any survivor.

Redis out of memory: ``ZADD`` is refused ("OOM command not allowed", it is a ``denyoom``
command), and the lease would lapse on every producer at once, each then taking the others'
streams over. A refused renewal is therefore sent again as a script flagged ``allow-oom``
(Redis >= 7.0, https://redis.io/docs/latest/develop/interact/programmability/
eval-intro/#eval-flags): updating the score of a member that exists allocates nothing.

Clocks: scores are the producers' wall clocks; a producer whose clock runs ``lease_s`` behind
the others looks dead to them. Keep hosts in NTP sync (the lease is seconds, not ms).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from redis.exceptions import ResponseError

from fakeai.services.backoff import RETRYABLE, Backoff, raise_if_cancelling
from fakeai.services.producer.items import is_oom
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient

__all__ = ["Lease"]

logger = logging.getLogger(__name__)

_ZADD_ALLOW_OOM = """#!lua flags=allow-oom
if ARGV[3] == "nx" then
  return redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[2])
end
return redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
"""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Lease:
    """This producer's member of ``Keys.producers()`` and the look-ups of the others."""

    def __init__(self, redis: RedisClient, keys: Keys, consumer: str, lease_s: float) -> None:
        if not lease_s > 0:
            raise ValueError(f"lease_s must be > 0; got {lease_s!r}")
        self._redis = redis
        self._key = keys.producers()
        self.consumer = consumer
        self.lease_s = lease_s
        self.renewals = 0
        """Successful renewals (for tests and figures)."""
        self._task: asyncio.Task[None] | None = None

    @property
    def interval_s(self) -> float:
        """How often the lease is renewed, and how often survivors look for lapsed ones."""
        return self.lease_s / 3

    async def _zadd(self, member: str, score: float, *, nx: bool = False) -> None:
        """``ZADD [NX]``; when Redis refuses it for lack of memory, the same as an
        ``allow-oom`` script (see the module docstring)."""
        try:
            await self._redis.zadd(self._key, {member: score}, nx=nx)
        except ResponseError as e:
            if not is_oom(e):
                raise
            args = (score, member, "nx" if nx else "")
            await self._redis.eval(_ZADD_ALLOW_OOM, 1, self._key, *args)

    async def renew(self) -> None:
        """Push this producer's lease expiry to now + ``lease_s``."""
        await self._zadd(self.consumer, now_ms() + int(self.lease_s * 1000))
        self.renewals += 1

    def start(self) -> None:
        """Renew every :attr:`interval_s` from now on (call :meth:`renew` first)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="producer-lease")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        backoff = Backoff(cap_s=self.interval_s)
        logged: set[type[BaseException]] = set()
        while True:
            raise_if_cancelling()
            try:
                await self.renew()
            except Exception as e:
                if isinstance(e, RETRYABLE):
                    if backoff.failures == 0:
                        logger.warning("lease: Redis unavailable (%s); retrying", e)
                elif type(e) not in logged:
                    logged.add(type(e))
                    logger.exception("lease: renewal failed; retrying")
                await backoff.sleep()
                continue
            if backoff.failures:
                logger.info("lease: renewed again after %d failures", backoff.failures)
                backoff.reset()
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        """Stop renewing (the lease then lapses by itself unless :meth:`leave` is called)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def leave(self, *, holding: bool) -> None:
        """At a clean shutdown: drop this producer's member, or, when it still ``holding``
        requests (read and never started), mark its lease lapsed, so a survivor takes them
        over at once instead of after their idle time."""
        if holding:
            await self._zadd(self.consumer, 0)
        else:
            await self._redis.zrem(self._key, self.consumer)

    async def lapsed(self) -> list[tuple[str, float]]:
        """Other producers whose lease has lapsed, with their scores."""
        rows: Any = await self._redis.zrangebyscore(self._key, "-inf", now_ms(), withscores=True)
        out = []
        for member, score in rows:
            name = member.decode() if isinstance(member, bytes) else str(member)
            if name != self.consumer:
                out.append((name, float(score)))
        return out

    async def claim(self, consumer: str) -> bool:
        """Take the right to take over ``consumer``'s requests (True for exactly one caller)."""
        return bool(await self._redis.zrem(self._key, consumer))

    async def give_back(self, consumer: str, score: float) -> None:
        """Put a lapsed member back (some of its requests are left for others); NX: a producer
        that came back to life and renewed meanwhile keeps its fresh lease."""
        await self._zadd(consumer, score, nx=True)
