"""Timing vocabulary: a stream's schedule, and how to wait for it without drift.

A :class:`TimingPlan` says when each output token of a stream is due, as offsets from the
stream's start (the moment the request arrived): token 0 at ``ttft_s``, token k at
``ttft_s + itl_s[0] + ... + itl_s[k-1]``. Generators sleep until ``start + offset(k)`` on the
event loop's clock (absolute deadlines), never ``sleep(itl)`` in a chain, so per-chunk work and
oversleep do not accumulate into drift.

Waiting is shared: :func:`wait_until` puts the waiter in the bucket of its deadline's
millisecond on the loop's :class:`Ticker`, which keeps ONE loop timer, at its earliest bucket,
and wakes a whole bucket at once. A thousand streams with a chunk due every ~30 ms then cost
at most ~1,000 timer wake-ups per second, not one timer created, armed and fired per chunk.
The resolution does not change under uvloop, whose timers and clock count whole milliseconds
anyway (a deadline rounded to the nearest millisecond wakes when the loop's own timer would);
on the default loop a wake-up can come up to half a millisecond before its deadline.

A coarser tick (:func:`set_tick_ms`, the producer's ``FAKEAI_PRODUCER_TICK_MS``) wakes
waiters only on multiples of ``tick_ms`` milliseconds of the loop's clock: a deadline waits
for the first multiple at or after it, so a token is never early and at most one tick late.
Every stream's tokens due within one tick then wake together, and what they write goes out in
one batch: fewer wake-ups of the producer, Redis and the edge per chunk, for a jitter of up to
one tick.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import threading
from array import array
from collections.abc import Awaitable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "LatencyModel",
    "Ticker",
    "TimingPlan",
    "set_tick_ms",
    "sleep_until",
    "ticker",
    "wait_until",
]


@dataclass(frozen=True, slots=True)
class TimingPlan:
    ttft_s: float
    """Time to first token, seconds from the stream's start."""
    itl_s: tuple[float, ...] = ()
    """Gap before each later token: ``itl_s[k]`` separates token k and token k+1."""
    _offsets: array[float] = field(
        default_factory=lambda: array("d"), init=False, repr=False, compare=False
    )
    """Cumulative offsets as C doubles: 8 bytes per token instead of a float object (32 bytes
    with its pointer); a plan lives as long as its stream."""

    def __post_init__(self) -> None:
        if self.ttft_s < 0 or any(x < 0 for x in self.itl_s):
            raise ValueError("TimingPlan: ttft_s and itl_s must be >= 0")
        offsets = array("d", itertools.accumulate(self.itl_s, initial=self.ttft_s))
        object.__setattr__(self, "_offsets", offsets)

    @classmethod
    def fixed(cls, ttft_s: float, itl_s: float, tokens: int) -> TimingPlan:
        return cls(ttft_s, (itl_s,) * max(0, tokens - 1))

    @classmethod
    def immediate(cls, tokens: int) -> TimingPlan:
        """Everything due at once (latency simulation off)."""
        return cls.fixed(0.0, 0.0, tokens)

    @property
    def tokens(self) -> int:
        return len(self._offsets)

    def offset(self, k: int) -> float:
        """Seconds from start until token ``k`` is due; past the plan, the last gap repeats."""
        if k < len(self._offsets):
            return self._offsets[k]
        last_gap = self.itl_s[-1] if self.itl_s else 0.0
        return self._offsets[-1] + last_gap * (k - len(self._offsets) + 1)

    def offsets(self) -> Iterator[float]:
        return iter(self._offsets)

    @property
    def total_s(self) -> float:
        return self._offsets[-1] if self._offsets else self.ttft_s


class _Ready:
    """An awaitable that completes at once without suspending (a deadline already passed)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


READY: Awaitable[None] = _Ready()


class Ticker:
    """Wakes the waiters of one event loop in millisecond buckets with a single loop timer.

    :meth:`wait` returns a future resolved when the deadline's bucket (the deadline rounded to
    the nearest millisecond; with :attr:`tick_ms` > 1, the first multiple of ``tick_ms`` at or
    after it) is due, or :data:`READY` if the deadline has passed. Cancelling the future (a
    cancelled task) is all it takes to leave: the bucket skips done futures.
    """

    __slots__ = ("_armed", "_buckets", "_handle", "_heap", "_loop", "tick_ms")

    def __init__(self, loop: asyncio.AbstractEventLoop, tick_ms: int = 1) -> None:
        if tick_ms < 1:
            raise ValueError(f"tick_ms must be >= 1, got {tick_ms}")
        self.tick_ms = tick_ms
        """Wake-ups fall on multiples of this many milliseconds of the loop's clock."""
        self._loop = loop
        self._buckets: dict[int, list[asyncio.Future[None]]] = {}
        self._heap: list[int] = []
        self._armed = math.inf
        """The bucket the timer is set for (inf: no timer)."""
        self._handle: asyncio.TimerHandle | None = None

    @property
    def waiting(self) -> int:
        """Futures in buckets (including cancelled ones not yet swept)."""
        return sum(len(b) for b in self._buckets.values())

    def wait(self, deadline: float) -> Awaitable[None]:
        """An awaitable that completes at ``deadline`` (loop clock, nearest millisecond)."""
        loop = self._loop
        if deadline <= loop.time():
            return READY
        step = self.tick_ms
        # (a hair below a multiple, so float error never moves a deadline on it a tick later)
        tick = (
            round(deadline * 1000.0)
            if step == 1
            else math.ceil(deadline * 1000.0 / step - 1e-6) * step
        )
        fut: asyncio.Future[None] = loop.create_future()
        bucket = self._buckets.get(tick)
        if bucket is not None:
            bucket.append(fut)
            return fut
        self._buckets[tick] = [fut]
        heapq.heappush(self._heap, tick)
        if tick < self._armed:
            if self._handle is not None:
                self._handle.cancel()
            self._armed = tick
            self._handle = loop.call_at(tick / 1000.0, self._fire)
        return fut

    def _fire(self) -> None:
        loop = self._loop
        heap, buckets = self._heap, self._buckets
        # Every bucket whose millisecond has come (the clock may read a hair before the tick
        # the timer was set for: half a millisecond of slack covers that, never a later tick).
        limit = loop.time() * 1000.0 + 0.5
        while heap and heap[0] <= limit:
            for fut in buckets.pop(heapq.heappop(heap)):
                if not fut.done():
                    fut.set_result(None)
        if heap:
            self._armed = heap[0]
            self._handle = loop.call_at(heap[0] / 1000.0, self._fire)
        else:
            self._armed = math.inf
            self._handle = None


class _Local(threading.local):
    ticker: Ticker | None = None


_local = _Local()
"""The ticker of the loop that last asked in this thread. A ticker holds its loop, so a map
from loops to tickers would keep every loop alive; a thread runs one loop at a time, so one
slot per thread keeps at most one finished loop until the next one asks."""


def ticker(loop: asyncio.AbstractEventLoop | None = None) -> Ticker:
    """The :class:`Ticker` of ``loop`` (default: the running loop), created on first use."""
    if loop is None:
        loop = asyncio.get_running_loop()
    t = _local.ticker
    if t is None or t._loop is not loop:
        t = _local.ticker = Ticker(loop)
    return t


def set_tick_ms(tick_ms: int, loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Wake the waiters of ``loop`` (default: the running loop) on multiples of ``tick_ms``
    milliseconds from now on (1, the default, is the nearest millisecond)."""
    if tick_ms < 1:
        raise ValueError(f"tick_ms must be >= 1, got {tick_ms}")
    ticker(loop).tick_ms = tick_ms


def wait_until(deadline: float) -> Awaitable[None]:
    """Await it to sleep until ``deadline`` on the running loop's clock (shared timer); it
    completes at once, without suspending, if the deadline has passed."""
    return ticker().wait(deadline)


async def sleep_until(deadline: float) -> None:
    """Sleep until ``deadline`` on the running loop's clock; return at once if it has passed."""
    await ticker().wait(deadline)


class LatencyModel(Protocol):
    """What generators need from a latency manager (``fakeai.latency_profiles``)."""

    def plan(
        self,
        model: str,
        *,
        output_tokens: int,
        prompt_tokens: int = 0,
        cached_tokens: int = 0,
        seed: int | None = None,
        ttft_ms: float | None = None,
        itl_ms: float | None = None,
    ) -> TimingPlan:
        """The schedule of one stream. ``ttft_ms`` / ``itl_ms`` override the profile."""
        ...

    def stream_started(self, model: str) -> None:
        """A stream of ``model`` began (ITL grows with the number of concurrent streams)."""
        ...

    def stream_finished(self, model: str) -> None: ...
