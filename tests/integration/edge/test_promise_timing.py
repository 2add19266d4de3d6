"""Timing promises of ``GET /v1/streams/{id}``, measured through HTTP on a real edge.

- ``?pace=`` replays a finished stream at its recorded pace scaled by the factor: the spread of
  arrival times is the recorded spread divided by the factor (``original`` = 1, ``fast`` = no
  waits).
- ``: ping`` heartbeats on an idle stream come every ``FAKEAI_HEARTBEAT_S``, at most an eighth
  later (the shared heartbeat slots of ``fakeai.services.edge.subscription.Wakeups``).

Deadlines are never early, so lower bounds are exact (less a millisecond of clock slack). A
loaded machine only makes events late; the upper side is therefore asserted as ratios between
paces and as a median, with margins several times the lateness a loaded two-core machine adds,
and still far from what a wrong factor (2x instead of 0.5x, or a heartbeat two periods apart)
would give.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import httpx
import pytest
from tests.integration.edge.edgekit import Edge, LogWriter

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

StartEdge = Callable[..., AbstractContextManager[Edge]]

_GAP_US = 100_000
"""Recorded gap between consecutive entries."""
_CHUNKS = 10
_TTFT_US = 200_000
"""Recorded time from acceptance to the first chunk."""
_EARLY_S = 0.002
"""Clock slack: loop timers may fire up to a millisecond early."""


async def _arrivals(c: httpx.AsyncClient, url: str, pace: str) -> tuple[float, list[float]]:
    """(when the request was sent, arrival time of each JSON line), monotonic seconds."""
    start = time.monotonic()
    stamps: list[float] = []
    async with c.stream("GET", url, params={"pace": pace, "format": "jsonl"}) as resp:
        assert resp.status_code == 200, await resp.aread()
        async for _line in resp.aiter_lines():
            stamps.append(time.monotonic())
    return start, stamps


async def test_pace_scales_the_recorded_spread_of_a_replay(edge: Edge, logw: LogWriter) -> None:
    """Four replays of one recording side by side: 0.5 takes twice the recorded time,
    ``original`` the recorded time, 2 half of it, ``fast`` none of it."""
    t0 = time.time_ns() // 1000 - 60_000_000  # recorded a minute ago
    sid = await logw.create(accepted_at=t0 / 1e6)
    stamps_us = [t0 + _TTFT_US + _GAP_US * i for i in range(_CHUNKS)]
    await logw.chunks(sid, [f"p{i} " for i in range(_CHUNKS)], t_us=stamps_us)
    await logw.done(sid, t_us=stamps_us[-1] + _GAP_US)
    to_end_s = (_TTFT_US + _GAP_US * _CHUNKS) / 1e6  # acceptance -> terminal entry
    paces = {"0.5": 0.5, "original": 1.0, "2": 2.0, "fast": None}
    url = f"/v1/streams/{sid}"
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as c:
        runs = await asyncio.gather(*(_arrivals(c, url, p) for p in paces))
    spread: dict[str, float] = {}
    for (name, factor), (start, stamps) in zip(paces.items(), runs, strict=True):
        assert len(stamps) == _CHUNKS + 1, name  # every chunk and the terminal entry
        spread[name] = stamps[-1] - stamps[0]
        if factor is not None:
            # Never early: entry k is due at start + (t_k - accepted) / pace.
            assert stamps[0] - start >= _TTFT_US / 1e6 / factor - _EARLY_S, name
            assert stamps[-1] - start >= to_end_s / factor - _EARLY_S, name
    # Nominal ratios: 0.5 vs 2 is 4, 0.5 vs original and original vs 2 are 2, so lateness of
    # up to a fifth of the recording keeps these true while a factor applied the wrong way
    # round (0.25) or ignored (1) fails them.
    assert spread["0.5"] >= 2.5 * spread["2"], spread
    assert spread["0.5"] >= 1.4 * spread["original"], spread
    assert spread["original"] >= 1.4 * spread["2"], spread
    assert spread["fast"] <= spread["2"] / 2, spread
    # (No lower bound on a spread itself: it starts at the first chunk's arrival, which a
    # loaded machine may delay more than the last's. The lower bounds above count from
    # `start`, the moment the request was sent, before the edge could begin.)


async def test_heartbeats_come_every_heartbeat_s_within_the_documented_slack(
    start_edge: StartEdge, logw: LogWriter
) -> None:
    """An idle live stream: ``: ping`` every ``heartbeat_s`` to ``9/8 heartbeat_s``, not
    earlier and not two periods apart."""
    period = 0.3
    pings = 8
    with start_edge(heartbeat_s=period) as edge:
        sid = await logw.create()
        stamps: list[float] = []
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as c:
            # Taken before the request leaves: the edge's first wait begins after it. (A stamp
            # taken once the headers arrived is later than that by their trip, which a loaded
            # machine makes long enough to put the first ping "early".)
            sent = time.monotonic()
            async with c.stream("GET", f"/v1/streams/{sid}") as resp:
                assert resp.status_code == 200
                async for line in resp.aiter_lines():
                    if line == ": ping":
                        stamps.append(time.monotonic())
                        if len(stamps) == pings:
                            break
    # Each ping waits a period after the previous one was sent, the first a period after the
    # edge began (after `sent`): ping k arrives at least k periods after `sent`, whatever the
    # delivery delays (a late ping k-1 does not make ping k early).
    for k, at in enumerate(stamps, start=1):
        assert at - sent >= k * (period - _EARLY_S), (k, at - sent)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # The median is immune to a stall or two of a loaded machine.
    assert statistics.median(gaps) <= 1.5 * period, gaps
