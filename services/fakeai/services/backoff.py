"""Exponential backoff for "retry until Redis returns" loops, shared by every service.

Every loop that talks to Redis (the producer's writer, intake, cancel listener and keep-alive,
the metrics consumer's readers and commits) survives a Redis outage or a cluster failover the
same way: sleep, double the delay up to a cap, try again, and reset once a call succeeds. Only
errors that mean "Redis, or a node of the cluster, is not there right now" are retried
(:data:`RETRYABLE`; ``redis.exceptions.ConnectionError`` covers ``BusyLoadingError``, the
LOADING reply of a Redis still reading its append-only file); any other error is a bug or a bad
command and goes up. The delays are redis-py's own :class:`redis.backoff.ExponentialBackoff`
(the policy its clients retry with); :class:`Backoff` adds what a loop needs around it: the
failure count and start, and a sleep that a stop event ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AskError,
    ClusterError,
    ReadOnlyError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["RETRYABLE", "Backoff", "is_nogroup", "raise_if_cancelling"]

RETRYABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,  # also LOADING (BusyLoadingError) and a full cluster pool
    RedisTimeoutError,
    OSError,
    ClusterError,  # CLUSTERDOWN, MASTERDOWN, a cluster client out of retries
    TryAgainError,
    AskError,  # ASK and MOVED: a slot moved (resharding, failover)
    ReadOnlyError,  # a write reached a master that was demoted to replica
    SlotNotCoveredError,
)
"""Errors that mean "Redis (or a node of the cluster) is not there right now": retried."""


def is_nogroup(e: object) -> bool:
    """The error of a group (or its stream) that does not exist: Redis lost it
    (https://redis.io/docs/latest/commands/xreadgroup/)."""
    return isinstance(e, ResponseError) and str(e).startswith("NOGROUP")


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library call swallowed.

    A cancel that lands while redis-py waits under its own timeout can come
    back as a timeout error or a normal return (``asyncio.timeout`` in Python 3.11), and a
    ``while True`` loop would then run on forever with the cancel pending: the producer's
    shutdown hung on exactly that. ``Task.cancelling()`` still counts the request, so every
    long-running loop checks it once per turn.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


@dataclass(slots=True)
class Backoff:
    """Delays 0.05 s, 0.1 s, 0.2 s ... capped at ``cap_s``; :meth:`reset` after a success.

    ``failures`` counts the attempts that failed since the last success, ``since`` is when the
    first of them failed (``time.monotonic()``).
    """

    first_s: float = 0.05
    cap_s: float = 2.0
    failures: int = 0
    since: float = 0.0
    _policy: ExponentialBackoff = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.first_s <= 0 or self.cap_s < self.first_s:
            raise ValueError(
                f"Backoff needs 0 < first_s <= cap_s; got first_s={self.first_s}, "
                f"cap_s={self.cap_s}"
            )
        self._policy = ExponentialBackoff(cap=self.cap_s, base=self.first_s)

    @property
    def delay_s(self) -> float:
        # Past 30 failures the cap has long been reached; 2**n of a huge n would overflow.
        return float(self._policy.compute(min(self.failures, 30)))

    async def sleep(self, stop: asyncio.Event | None = None) -> None:
        """Wait the next delay; with ``stop``, end at once when it is set."""
        raise_if_cancelling()
        if not self.failures:
            self.since = time.monotonic()
        delay = self.delay_s
        self.failures += 1
        if stop is None:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)

    def reset(self) -> None:
        self.failures = 0
