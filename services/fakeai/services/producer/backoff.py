"""Exponential backoff for "retry until Redis returns" loops.

Every loop of the producer that talks to Redis (the writer, the request intake, the cancel
listener, the keep-alive) survives a Redis outage the same way: sleep, double the delay up to a
cap, try again, and reset once a call succeeds. Only connection-level failures are retried
(``redis.exceptions.ConnectionError`` covers ``BusyLoadingError``, the LOADING reply of a Redis
that is still reading its append-only file); any other error is a bug or a bad command and
goes up.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["RETRYABLE", "Backoff", "raise_if_cancelling"]

RETRYABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)
"""Errors that mean "Redis is unreachable right now", not "this command is wrong"."""


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library call swallowed.

    A cancel that lands while redis-py (or FastStream) waits under its own timeout can come
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
    """Delays 0.05 s, 0.1 s, 0.2 s ... capped at ``cap_s``; :meth:`reset` after a success."""

    first_s: float = 0.05
    cap_s: float = 2.0
    failures: int = 0

    def __post_init__(self) -> None:
        if self.first_s <= 0 or self.cap_s < self.first_s:
            raise ValueError(
                f"Backoff needs 0 < first_s <= cap_s; got first_s={self.first_s}, "
                f"cap_s={self.cap_s}"
            )

    @property
    def delay_s(self) -> float:
        return min(self.cap_s, self.first_s * float(2 ** min(self.failures, 30)))

    async def sleep(self) -> None:
        raise_if_cancelling()
        delay = self.delay_s
        self.failures += 1
        await asyncio.sleep(delay)

    def reset(self) -> None:
        self.failures = 0
