"""Regression: a producer loop must stop when cancelled, even if a call below swallowed it.

The producer's shutdown hung when a cancel landed inside a library call that turned it into a
normal return; its ``while True`` loop went on with the cancel still pending. The invariant:
loops that check ``raise_if_cancelling()`` once per turn end promptly after ``Task.cancel()``.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from fakeai.services.backoff import Backoff, raise_if_cancelling


async def _swallowing_call() -> None:
    with contextlib.suppress(asyncio.CancelledError):  # what a misbehaving library does
        await asyncio.sleep(0.01)


async def test_loop_with_the_check_ends_after_a_swallowed_cancel() -> None:
    turning = asyncio.Event()

    async def loop() -> None:
        while True:
            raise_if_cancelling()
            turning.set()
            await _swallowing_call()

    task = asyncio.create_task(loop())
    await asyncio.wait_for(turning.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)


async def test_backoff_sleep_honours_a_pending_cancel() -> None:
    async def retrying() -> None:
        backoff = Backoff(first_s=0.01, cap_s=0.01)
        while True:
            await _swallowing_call()
            await backoff.sleep()

    task = asyncio.create_task(retrying())
    await asyncio.sleep(0.03)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
