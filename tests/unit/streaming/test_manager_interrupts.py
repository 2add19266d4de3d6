"""StreamManager's one-timer timeout: interrupts only the generator, never anyone else's cancel.

The timer and ``cancel_stream`` cancel the consumer's task only while it awaits the generator,
and undo their own cancellation with ``Task.uncancel()``; these tests state those invariants.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fakeai.streaming import (
    StreamCancelledException,
    StreamChunk,
    StreamContext,
    StreamingGenerator,
    StreamManager,
    StreamStatus,
    StreamTimeoutException,
    StreamType,
)


def _chunk(i: int) -> StreamChunk:
    return StreamChunk(chunk_id=f"c-{i}", sequence_number=i, data={"i": i}, token_count=1)


class HangingGenerator(StreamingGenerator):
    """One chunk, then waits forever inside the next one (``first_sent`` is set in between)."""

    def __init__(self) -> None:
        self.first_sent = asyncio.Event()
        self.interrupted = asyncio.Event()

    async def generate(
        self, context: StreamContext, full_response: Any
    ) -> AsyncIterator[StreamChunk]:
        yield _chunk(0)
        self.first_sent.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.interrupted.set()
            raise
        yield _chunk(1)  # pragma: no cover


class SwallowingGenerator(StreamingGenerator):
    """Hangs inside its second chunk, swallows the cancellation, then yields another chunk."""

    def __init__(self) -> None:
        self.first_sent = asyncio.Event()
        self.swallowed = asyncio.Event()

    async def generate(
        self, context: StreamContext, full_response: Any
    ) -> AsyncIterator[StreamChunk]:
        yield _chunk(0)
        self.first_sent.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.swallowed.set()
        yield _chunk(1)
        yield _chunk(2)  # pragma: no cover


class ListGenerator(StreamingGenerator):
    def __init__(self, n: int) -> None:
        self.n = n

    async def generate(
        self, context: StreamContext, full_response: Any
    ) -> AsyncIterator[StreamChunk]:
        for i in range(self.n):
            yield _chunk(i)


async def test_timeout_interrupts_when_each_chunk_is_awaited_from_a_new_task() -> None:
    """``wait_for(anext(...))`` awaits every chunk from its own task: the timer must cancel
    the task that awaits the generator now, not the one that started the stream."""
    manager = StreamManager()
    gen = HangingGenerator()
    stream = manager.create_stream(
        StreamType.CHAT, generator=gen, stream_id="n1", timeout_seconds=0.05
    )
    first = await asyncio.wait_for(anext(stream), 5)
    assert first.sequence_number == 0
    with pytest.raises(StreamTimeoutException):
        await asyncio.wait_for(anext(stream), 5)  # the test's own safety net
    assert gen.interrupted.is_set()
    assert manager.get_stream_status("n1") is StreamStatus.TIMEOUT
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_swallowed_interrupt_still_ends_the_stream_and_is_taken_back() -> None:
    """A generator that catches the interrupt and carries on must not outlive its timeout,
    and the consumer's task must not be left with a pending cancel request."""
    manager = StreamManager()
    gen = SwallowingGenerator()
    seen: list[StreamChunk] = []

    async def consume() -> None:
        async for chunk in manager.create_stream(
            StreamType.CHAT, generator=gen, stream_id="s1", timeout_seconds=0.05
        ):
            seen.append(chunk)

    task = asyncio.create_task(consume())
    with pytest.raises(StreamTimeoutException):
        await asyncio.wait_for(task, 5)  # the test's own safety net
    assert task.cancelling() == 0
    assert gen.swallowed.is_set()
    assert [c.sequence_number for c in seen] == [0]
    assert manager.get_stream_status("s1") is StreamStatus.TIMEOUT


async def test_cancel_stream_with_swallowing_generator_reports_cancelled() -> None:
    manager = StreamManager()
    gen = SwallowingGenerator()
    stream = manager.create_stream(StreamType.CHAT, generator=gen, stream_id="s2")

    async def rest() -> list[StreamChunk]:
        return [c async for c in stream]

    await anext(stream)
    task = asyncio.create_task(rest())
    await gen.first_sent.wait()
    assert manager.cancel_stream("s2", reason="stop") is True
    with pytest.raises(StreamCancelledException) as info:
        await asyncio.wait_for(task, 5)
    assert info.value.reason == "stop"
    assert gen.swallowed.is_set()
    assert manager.get_stream_status("s2") is StreamStatus.CANCELLED


async def test_foreign_cancel_together_with_interrupt_propagates() -> None:
    """The consumer's task is cancelled by someone else in the same loop step as our
    interrupt: the foreign cancellation wins and is not turned into a stream exception."""
    manager = StreamManager()
    gen = HangingGenerator()

    async def consume() -> None:
        async for _ in manager.create_stream(StreamType.CHAT, generator=gen, stream_id="f1"):
            pass

    task = asyncio.create_task(consume())
    await gen.first_sent.wait()
    task.cancel()
    assert manager.cancel_stream("f1") is True
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gen.interrupted.is_set()
    assert manager.get_stream_status("f1") is StreamStatus.CANCELLED


async def test_finished_stream_releases_its_timer() -> None:
    """Regression: the single per-stream timer is cancelled when the stream ends, so a long
    timeout does not keep a loop timer (and the stream record) alive."""
    manager = StreamManager()
    stream = manager.create_stream(
        StreamType.CHAT, generator=ListGenerator(2), stream_id="h1", timeout_seconds=3600
    )
    await anext(stream)
    rec = manager._streams["h1"]
    handle = rec.deadline_handle
    assert handle is not None
    assert not handle.cancelled()
    assert [c.sequence_number async for c in stream] == [1]
    assert handle.cancelled()
    assert rec.deadline_handle is None
    assert rec.task is None
    assert manager.get_stream_status("h1") is StreamStatus.COMPLETED
