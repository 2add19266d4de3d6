"""Pacing one stream: when each token is due, on the event loop's clock.

:func:`make_pacer` picks the schedule (exact overrides, the latency manager's plan, or a fixed
``chunk_delay_seconds``); :class:`Pacer` waits for each token's absolute deadline on the loop's
shared :class:`~fakeai.timing.Ticker`, so per-chunk work and oversleep never accumulate.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable
from typing import Any

from fakeai.streaming.base import StreamContext
from fakeai.timing import READY, LatencyModel, Ticker, TimingPlan, ticker

__all__ = ["WALL_CLOCK_AHEAD_S", "Pacer", "loop_origin", "make_pacer"]


class Pacer:
    """Waits for token deadlines; does nothing at all (no sleep, no yield) when inactive.

    Deadlines come from a :class:`TimingPlan`, or, for exact fixed timings, from
    ``first_s + token * gap_s`` (no per-token storage: a 600-token plan is ~10 KiB).
    """

    __slots__ = ("_first", "_gap", "_origin", "_plan", "_ticker", "active")

    def __init__(
        self, plan: TimingPlan | None, gap_s: float, origin: float | None, first_s: float = 0.0
    ) -> None:
        self._plan = plan if plan is not None and plan.total_s > 0 else None
        self._gap = gap_s
        self._first = first_s
        self.active = self._plan is not None or gap_s > 0 or first_s > 0
        self._origin = 0.0
        self._ticker: Ticker | None = None
        if self.active:
            loop = asyncio.get_running_loop()
            self._ticker = ticker(loop)
            self._origin = loop_origin(origin, loop)

    def due(self, token: int) -> float:
        """Loop time when ``token`` (0-based) is due; the origin when inactive."""
        if self._plan is not None:
            return self._origin + self._plan.offset(token)
        return self._origin + self._first + token * self._gap

    def wait(self, token: int) -> Awaitable[None]:
        """Await it to wait until ``token`` is due (the loop's shared :class:`~fakeai.timing.
        Ticker`; no coroutine per call); completes at once when inactive or already due."""
        if self._ticker is None:
            return READY
        return self._ticker.wait(self.due(token))


WALL_CLOCK_AHEAD_S = 1e8
"""An origin this far (~3 years) past the loop's clock is a ``time.time()`` value (upstream's
``StreamContext.start_time``), not a loop time: the loop's monotonic clock counts from boot."""


def loop_origin(origin: float | None, loop: asyncio.AbstractEventLoop) -> float:
    """``origin`` on the loop's clock: now when None, converted when it is a wall-clock time."""
    now = loop.time()
    if origin is None:
        return now
    if origin - now > WALL_CLOCK_AHEAD_S:
        return now - (time.time() - origin)
    return origin


def _override_s(name: str, value: float | None) -> float:
    ms = 0.0 if value is None else float(value)
    if not (math.isfinite(ms) and ms >= 0):
        raise ValueError(f"{name} must be a finite number >= 0 (ms), got {value}")
    return ms / 1000.0


def make_pacer(
    context: StreamContext, latency_manager: LatencyModel | None, output_tokens: int
) -> Pacer:
    """The pacing of one stream.

    With latency simulation on: exact ``ttft_ms`` *and* ``itl_ms`` overrides (a missing one
    counts as 0 when there is no latency manager) give fixed deadlines, computed per token;
    otherwise the latency manager's plan. Otherwise, or when neither is available,
    ``chunk_delay_seconds`` between steps (0 = no waiting at all). Call it from inside the
    generator body, so the origin defaults to the first ``__anext__``.
    """
    tokens = max(1, output_tokens)
    ttft, itl = context.ttft_ms, context.itl_ms
    if context.enable_latency_simulation:
        exact = ttft is not None and itl is not None
        if exact or (latency_manager is None and (ttft is not None or itl is not None)):
            # Overrides are exact (no jitter, prefill or load: LatencyModel.plan's contract),
            # so the schedule is arithmetic and needs no per-token plan.
            return Pacer(
                None, _override_s("itl_ms", itl), context.start_time, _override_s("ttft_ms", ttft)
            )
        legacy = getattr(latency_manager, "plan", None) is None
        if latency_manager is not None and legacy:
            # A FakeAI 0.3 style manager (get_ttft / get_itl only): one TTFT, one fixed ITL.
            lm: Any = latency_manager
            first = lm.get_ttft(context.model, context.prompt_tokens)
            return Pacer(None, float(lm.get_itl(context.model)), context.start_time, float(first))
        if latency_manager is not None:
            plan = latency_manager.plan(
                context.model,
                output_tokens=tokens,
                prompt_tokens=context.prompt_tokens,
                cached_tokens=context.cached_tokens,
                seed=context.seed,
                ttft_ms=ttft,
                itl_ms=itl,
            )
            return Pacer(plan, 0.0, context.start_time)
    return Pacer(None, context.chunk_delay_seconds, context.start_time)
