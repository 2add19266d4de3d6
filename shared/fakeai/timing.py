"""Timing vocabulary: a stream's schedule, and how to wait for it without drift.

A :class:`TimingPlan` says when each output token of a stream is due, as offsets from the
stream's start (the moment the request arrived): token 0 at ``ttft_s``, token k at
``ttft_s + itl_s[0] + ... + itl_s[k-1]``. Generators sleep until ``start + offset(k)`` on the
event loop's clock (absolute deadlines), never ``sleep(itl)`` in a chain, so per-chunk work and
oversleep do not accumulate into drift.
"""

from __future__ import annotations

import asyncio
import itertools
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["LatencyModel", "TimingPlan", "sleep_until"]


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


async def sleep_until(deadline: float) -> None:
    """Sleep until ``deadline`` on the running loop's clock; return at once if it has passed."""
    loop = asyncio.get_running_loop()
    delay = deadline - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)


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
