"""The shared deadline timer (fakeai.timing.Ticker): buckets, one loop timer, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from fakeai.timing import READY, Ticker, set_tick_ms, sleep_until, ticker, wait_until

EARLY = 0.005


async def test_past_deadline_completes_without_a_future() -> None:
    loop = asyncio.get_running_loop()
    t = ticker(loop)
    assert t.wait(loop.time() - 1.0) is READY
    assert t.waiting == 0
    await wait_until(loop.time() - 0.5)  # must not suspend or raise


async def test_one_ticker_per_loop() -> None:
    loop = asyncio.get_running_loop()
    assert ticker() is ticker(loop)


async def test_waiters_wake_at_their_deadlines_in_order() -> None:
    loop = asyncio.get_running_loop()
    origin = loop.time()
    woke: list[tuple[int, float]] = []

    async def waiter(i: int, offset: float) -> None:
        await wait_until(origin + offset)
        woke.append((i, loop.time()))

    offsets = [0.06, 0.02, 0.04, 0.02]
    await asyncio.gather(*(waiter(i, off) for i, off in enumerate(offsets)))
    assert sorted(i for i, _ in woke) == [0, 1, 2, 3]
    assert [i for i, _ in woke][-1] == 0  # the latest deadline wakes last
    for i, at in woke:
        assert at >= origin + offsets[i] - EARLY


async def test_same_millisecond_shares_one_bucket_and_one_timer() -> None:
    loop = asyncio.get_running_loop()
    t = Ticker(loop)
    deadline = loop.time() + 0.03
    futs = [t.wait(deadline) for _ in range(5)]
    assert t.waiting == 5
    assert len(t._buckets) == 1
    timer = t._handle
    assert timer is not None
    # A later bucket does not move the timer; an earlier one does.
    later = t.wait(deadline + 0.02)
    assert t._handle is timer
    earlier = t.wait(deadline - 0.02)
    assert t._handle is not timer
    assert timer.cancelled()
    await asyncio.gather(*futs, later, earlier)  # type: ignore[arg-type]
    assert t.waiting == 0
    assert t._handle is None


async def test_cancelled_waiter_does_not_disturb_its_bucket() -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.03

    async def waiter() -> str:
        await sleep_until(deadline)
        return "woke"

    keep = asyncio.create_task(waiter())
    leave = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    leave.cancel()
    assert await keep == "woke"
    assert leave.cancelled()
    assert loop.time() >= deadline - EARLY


async def test_a_coarse_tick_wakes_on_its_multiples_never_before_a_deadline() -> None:
    """tick_ms 4: a deadline waits for the first multiple of 4 ms at or after it; deadlines in
    one tick share its bucket; none wakes before its deadline or a tick after it."""
    loop = asyncio.get_running_loop()
    t = Ticker(loop, tick_ms=4)
    base = (int(loop.time() * 1000) // 4 + 10) * 4  # a multiple of 4 ms, ~40 ms ahead
    offsets_ms = [0.0, 0.3, 1.0, 3.9, 4.0, 4.1, 7.5]
    futs = [t.wait((base + off) / 1000) for off in offsets_ms]
    assert sorted(t._buckets) == [base, base + 4, base + 8]
    assert [len(t._buckets[k]) for k in sorted(t._buckets)] == [1, 4, 2]
    woke: list[float] = []
    for fut in futs:
        await fut
        woke.append(loop.time() * 1000)
    for off, at in zip(offsets_ms, woke, strict=True):
        assert at >= base + off - 0.5  # never early (half a ms: the loop clock's rounding)


async def test_set_tick_ms_sets_the_running_loops_ticker_and_refuses_zero() -> None:
    loop = asyncio.get_running_loop()
    try:
        set_tick_ms(3)
        assert ticker(loop).tick_ms == 3
        with pytest.raises(ValueError, match="tick_ms must be >= 1"):
            set_tick_ms(0)
        with pytest.raises(ValueError, match="tick_ms must be >= 1"):
            Ticker(loop, tick_ms=0)
    finally:
        set_tick_ms(1)
    assert ticker(loop).tick_ms == 1
