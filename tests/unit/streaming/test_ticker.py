"""The shared deadline timer (fakeai.timing.Ticker): buckets, one loop timer, cancellation."""

from __future__ import annotations

import asyncio

from fakeai.timing import READY, Ticker, sleep_until, ticker, wait_until

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
