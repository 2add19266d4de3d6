"""Regression: a producer loop must stop when cancelled, even if a call below swallowed it.

The producer's shutdown hung when a cancel landed inside a library call that turned it into a
normal return; its ``while True`` loop went on with the cancel still pending. The invariant:
loops that check ``raise_if_cancelling()`` once per turn (and every ``Backoff.sleep``) end
promptly after ``Task.cancel()``.

Each test cancels its task while it is inside the swallowing call, never elsewhere: a cancel
that landed in a plain ``await`` would end the loop by itself and prove nothing. The loops are
bounded, so a broken check ends the task normally (a failure) instead of hanging it.
"""

from __future__ import annotations

import asyncio

import pytest

from fakeai.services.backoff import Backoff, raise_if_cancelling

_TURNS = 20


class _Swallower:
    """A misbehaving library call: turns a cancel into a normal return. The first call waits
    until cancelled (and says when it is waiting); later ones return at once."""

    def __init__(self) -> None:
        self.waiting = asyncio.Event()
        self.swallowed = 0

    async def __call__(self) -> None:
        if self.waiting.is_set():
            await asyncio.sleep(0)
            return
        self.waiting.set()
        try:
            await asyncio.Event().wait()  # never set: only a cancel ends it
        except asyncio.CancelledError:
            self.swallowed += 1


async def _cancel_inside(swallow: _Swallower, task: asyncio.Task[None]) -> None:
    await asyncio.wait_for(swallow.waiting.wait(), 5)
    task.cancel()


async def test_loop_with_the_check_ends_after_a_swallowed_cancel() -> None:
    swallow = _Swallower()

    async def loop() -> None:
        for _ in range(_TURNS):
            raise_if_cancelling()
            await swallow()

    task = asyncio.create_task(loop())
    await _cancel_inside(swallow, task)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert swallow.swallowed == 1  # the cancel did land in the swallowing call


async def test_backoff_sleep_honours_a_pending_cancel() -> None:
    swallow = _Swallower()

    async def retrying() -> None:
        backoff = Backoff(first_s=0.001, cap_s=0.001)
        for _ in range(_TURNS):
            await swallow()
            await backoff.sleep()

    task = asyncio.create_task(retrying())
    await _cancel_inside(swallow, task)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert swallow.swallowed == 1


async def test_backoff_sleep_with_a_stop_event_honours_a_pending_cancel() -> None:
    swallow = _Swallower()
    stop = asyncio.Event()

    async def retrying() -> None:
        backoff = Backoff(first_s=0.001, cap_s=0.001)
        for _ in range(_TURNS):
            await swallow()
            await backoff.sleep(stop)

    task = asyncio.create_task(retrying())
    await _cancel_inside(swallow, task)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert swallow.swallowed == 1


async def test_backoff_sleep_ends_at_once_when_stop_is_set() -> None:
    backoff = Backoff(first_s=60.0, cap_s=60.0)
    stop = asyncio.Event()
    sleeping = asyncio.create_task(backoff.sleep(stop))
    await asyncio.sleep(0)
    assert not sleeping.done()
    stop.set()
    await asyncio.wait_for(sleeping, 5)  # far short of the 60 s delay
    assert backoff.failures == 1
