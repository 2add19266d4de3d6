"""StreamManager lifecycle: completion, timeout, cancellation, failure, max_chunks, retention."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.support.servers import eventually

from fakeai.content import build_chat_completion, build_text_completion
from fakeai.streaming import (
    StreamCancelledException,
    StreamChunk,
    StreamContext,
    StreamGenerationException,
    StreamingGenerator,
    StreamManager,
    StreamStatus,
    StreamTimeoutException,
    StreamType,
)
from fakeai.streaming.sse import chunk_text


def chat_response(max_tokens: int = 8) -> dict[str, Any]:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    return build_chat_completion(
        {**body, "max_tokens": max_tokens}, completion_id="chatcmpl-t", created=1, seed=3
    )


class ListGenerator(StreamingGenerator):
    """Yields the given items; records whether its body was closed."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.closed = asyncio.Event()

    async def generate(
        self, context: StreamContext, full_response: Any
    ) -> AsyncIterator[StreamChunk]:
        try:
            for i, data in enumerate(self.items):
                yield StreamChunk(
                    chunk_id=f"{context.stream_id}-{i}",
                    sequence_number=i,
                    data=data,
                    token_count=1,
                    is_first=i == 0,
                    is_last=i == len(self.items) - 1,
                )
        finally:
            self.closed.set()


class HangingGenerator(StreamingGenerator):
    """One chunk, then waits forever inside the next one (``first_sent`` is set in between)."""

    def __init__(self) -> None:
        self.first_sent = asyncio.Event()
        self.interrupted = asyncio.Event()

    async def generate(
        self, context: StreamContext, full_response: Any
    ) -> AsyncIterator[StreamChunk]:
        yield StreamChunk(chunk_id="c-0", sequence_number=0, data={"content": "a"}, token_count=1)
        self.first_sent.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.interrupted.set()
            raise
        yield StreamChunk(chunk_id="c-1", sequence_number=1, data={})  # pragma: no cover


class FailingGenerator(StreamingGenerator):
    async def generate(
        self, context: StreamContext, full_response: Any
    ) -> AsyncIterator[StreamChunk]:
        yield StreamChunk(chunk_id="c-0", sequence_number=0, data={"content": "a"})
        raise RuntimeError("model exploded")


async def test_chat_stream_completes_with_metrics() -> None:
    manager = StreamManager()
    response = chat_response()
    chunks = [
        c async for c in manager.create_stream(StreamType.CHAT, "gpt-4o", response, stream_id="s1")
    ]
    text = "".join(chunk_text(c.data) for c in chunks)
    assert text == response["choices"][0]["message"]["content"]
    assert chunks[0].is_first
    assert chunks[-1].is_last
    assert manager.get_stream_status("s1") is StreamStatus.COMPLETED
    metrics = manager.get_stream_metrics("s1")
    assert metrics is not None
    assert metrics.total_chunks == len(chunks)
    assert metrics.total_tokens == response["usage"]["completion_tokens"]
    assert metrics.end_time is not None
    assert metrics.first_chunk_time is not None
    assert manager.get_active_stream_count() == 0


async def test_completion_stream_and_string_type() -> None:
    response = build_text_completion(
        {"model": "m", "prompt": "Say", "max_tokens": 5}, completion_id="cmpl-t", created=1, seed=1
    )
    manager = StreamManager()
    chunks = [c async for c in manager.create_stream("completion", "m", response)]
    assert chunks[0].data["object"] == "text_completion"
    assert "".join(chunk_text(c.data) for c in chunks) == response["choices"][0]["text"]


async def test_default_stream_id_is_unguessable_and_typed() -> None:
    manager = StreamManager()
    stream = manager.create_stream(StreamType.CHAT, full_response=chat_response())
    (sid,) = manager.active_streams()
    assert sid.startswith("chatcmpl-")
    assert len(sid) == len("chatcmpl-") + 24
    assert manager.get_stream_status(sid) is StreamStatus.PENDING
    async for _ in stream:
        assert manager.get_stream_status(sid) is StreamStatus.STREAMING
    assert manager.get_stream_status(sid) is StreamStatus.COMPLETED


async def test_timeout_interrupts_generator_hanging_inside_a_chunk() -> None:
    manager = StreamManager()
    gen = HangingGenerator()
    seen: list[StreamChunk] = []

    async def consume() -> None:
        async for chunk in manager.create_stream(
            StreamType.CHAT, generator=gen, stream_id="t1", timeout_seconds=0.05
        ):
            seen.append(chunk)

    with pytest.raises(StreamTimeoutException) as info:
        await asyncio.wait_for(consume(), 5)  # the test's own safety net, far above 0.05 s
    assert info.value.stream_id == "t1"
    assert info.value.timeout_seconds == 0.05
    assert len(seen) == 1
    assert gen.interrupted.is_set()
    assert manager.get_stream_status("t1") is StreamStatus.TIMEOUT


async def test_timeout_never_fires_inside_consumer_code() -> None:
    """Regression: the deadline passing while the consumer holds a chunk must not cancel the
    consumer's own awaits; the timeout is raised at the consumer's next step instead."""
    manager = StreamManager()
    stream = manager.create_stream(
        StreamType.CHAT, generator=ListGenerator([{}, {}]), stream_id="t2", timeout_seconds=0.02
    )
    first = await anext(stream)
    assert first.sequence_number == 0
    await asyncio.sleep(0.05)  # a slow consumer: runs past the deadline, uninterrupted
    with pytest.raises(StreamTimeoutException):
        await anext(stream)
    assert manager.get_stream_status("t2") is StreamStatus.TIMEOUT
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_cancel_interrupts_sleeping_generator_promptly() -> None:
    manager = StreamManager()
    gen = HangingGenerator()
    seen: list[StreamChunk] = []

    async def consume() -> None:
        async for chunk in manager.create_stream(StreamType.CHAT, generator=gen, stream_id="c1"):
            seen.append(chunk)

    task = asyncio.create_task(consume())
    await gen.first_sent.wait()
    assert manager.cancel_stream("c1", reason="user asked") is True
    assert manager.get_stream_status("c1") is StreamStatus.CANCELLED
    with pytest.raises(StreamCancelledException) as info:
        async with asyncio.timeout(0.5):
            await task
    assert info.value.reason == "user asked"
    assert info.value.stream_id == "c1"
    assert gen.interrupted.is_set()
    assert len(seen) == 1
    assert manager.cancel_stream("c1") is False  # already finished
    assert manager.get_stream_status("c1") is StreamStatus.CANCELLED


async def test_cancel_between_chunks_raises_at_next_step() -> None:
    manager = StreamManager()
    gen = ListGenerator([{}, {}, {}])
    stream = manager.create_stream(StreamType.CHAT, generator=gen, stream_id="c2")
    await anext(stream)
    assert manager.cancel_stream("c2") is True
    await asyncio.sleep(0)  # the consumer's own awaits are not interrupted
    with pytest.raises(StreamCancelledException):
        await anext(stream)
    assert gen.closed.is_set()
    assert manager.get_stream_status("c2") is StreamStatus.CANCELLED


async def test_cancel_before_start_and_unknown() -> None:
    manager = StreamManager()
    stream = manager.create_stream(StreamType.CHAT, generator=ListGenerator([{}]), stream_id="p")
    assert manager.cancel_stream("p") is True
    assert manager.get_active_stream_count() == 0
    with pytest.raises(StreamCancelledException):
        await anext(stream)
    assert manager.cancel_stream("p") is False
    assert manager.cancel_stream("nope") is False


async def test_generator_error_becomes_generation_exception() -> None:
    manager = StreamManager()
    stream = manager.create_stream(StreamType.CHAT, generator=FailingGenerator(), stream_id="f1")
    seen = [await anext(stream)]
    with pytest.raises(StreamGenerationException) as info:
        await anext(stream)
    assert len(seen) == 1
    assert info.value.error.error_code == "generation_error"
    assert info.value.error.message == "model exploded"
    assert isinstance(info.value.__cause__, RuntimeError)
    assert manager.get_stream_status("f1") is StreamStatus.FAILED


async def test_max_chunks_stops_and_marks_last() -> None:
    manager = StreamManager()
    gen = ListGenerator([{"i": i} for i in range(10)])
    chunks = [
        c
        async for c in manager.create_stream(
            StreamType.CHAT, generator=gen, stream_id="m1", max_chunks=3
        )
    ]
    assert [c.data["i"] for c in chunks] == [0, 1, 2]
    assert chunks[-1].is_last
    assert gen.closed.is_set()
    assert manager.get_stream_status("m1") is StreamStatus.COMPLETED


async def test_consumer_closing_early_cancels_and_after_last_completes() -> None:
    manager = StreamManager()
    stream = manager.create_stream(
        StreamType.CHAT, generator=ListGenerator([{}, {}, {}]), stream_id="e1"
    )
    async with contextlib.aclosing(stream):
        await anext(stream)
    assert manager.get_stream_status("e1") is StreamStatus.CANCELLED

    stream = manager.create_stream(
        StreamType.CHAT, generator=ListGenerator([{}, {}]), stream_id="e2"
    )
    async with contextlib.aclosing(stream):
        async for chunk in stream:
            if chunk.is_last:
                break
    assert manager.get_stream_status("e2") is StreamStatus.COMPLETED


async def test_break_without_aclose_is_finalized() -> None:
    manager = StreamManager()
    async for _ in manager.create_stream(
        StreamType.CHAT, generator=ListGenerator([{}, {}]), stream_id="e3"
    ):
        break

    async def finished() -> bool:
        return manager.get_stream_status("e3") is StreamStatus.CANCELLED

    await eventually(finished)
    assert manager.get_active_stream_count() == 0


async def test_task_cancellation_propagates() -> None:
    manager = StreamManager()
    gen = HangingGenerator()

    async def consume() -> None:
        async for _ in manager.create_stream(StreamType.CHAT, generator=gen, stream_id="k1"):
            pass

    task = asyncio.create_task(consume())
    await gen.first_sent.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert manager.get_stream_status("k1") is StreamStatus.CANCELLED


async def test_retention_window_then_forgotten() -> None:
    manager = StreamManager(retention_seconds=0.05)
    async for _ in manager.create_stream(
        StreamType.CHAT, generator=ListGenerator([{}]), stream_id="r1"
    ):
        pass
    assert manager.get_stream_status("r1") is StreamStatus.COMPLETED
    assert manager.get_stream_metrics("r1") is not None

    async def forgotten() -> bool:
        return manager.get_stream_status("r1") is None

    await eventually(forgotten)
    assert manager.get_stream_metrics("r1") is None
    assert not manager._streams
    assert not manager._expiry
    assert not manager._pending


async def test_finished_streams_are_bounded_by_count_oldest_first() -> None:
    """A busy process must not keep one record per finished stream for the whole retention:
    past ``max_finished_streams`` the oldest finished records go (RSS stays flat)."""
    manager = StreamManager(retention_seconds=3600.0, max_finished_streams=3)
    for i in range(5):
        async for _ in manager.create_stream(
            StreamType.CHAT, generator=ListGenerator([{}]), stream_id=f"b{i}"
        ):
            pass
    assert [manager.get_stream_status(f"b{i}") for i in range(2)] == [None, None]
    assert all(manager.get_stream_status(f"b{i}") is StreamStatus.COMPLETED for i in (2, 3, 4))
    assert len(manager._streams) == 3
    assert len(manager._expiry) == 3
    with pytest.raises(ValueError, match="max_finished_streams"):
        StreamManager(max_finished_streams=-1)


async def test_running_stream_is_never_pruned() -> None:
    manager = StreamManager(retention_seconds=0.0)
    stream = manager.create_stream(StreamType.CHAT, generator=HangingGenerator(), stream_id="r2")
    await anext(stream)
    manager._prune()
    assert manager.get_stream_status("r2") is StreamStatus.STREAMING
    await stream.aclose()
    assert manager.get_stream_status("r2") is None  # retention 0: forgotten once finished


async def test_stream_id_reuse() -> None:
    manager = StreamManager()
    stream = manager.create_stream(StreamType.CHAT, generator=ListGenerator([{}]), stream_id="u")
    with pytest.raises(ValueError, match="already in use"):
        manager.create_stream(StreamType.CHAT, generator=ListGenerator([{}]), stream_id="u")
    async for _ in stream:
        pass
    again = manager.create_stream(StreamType.CHAT, generator=ListGenerator([{}, {}]), stream_id="u")
    assert len([c async for c in again]) == 2


def test_bad_arguments() -> None:
    manager = StreamManager()
    gen = ListGenerator([])
    with pytest.raises(ValueError, match="stream_type must be one of chat, completion, audio"):
        manager.create_stream("video", generator=gen)
    with pytest.raises(ValueError, match="stream_type"):
        manager.create_stream(..., generator=gen)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout_seconds"):
        manager.create_stream(StreamType.CHAT, generator=gen, timeout_seconds=0)
    with pytest.raises(ValueError, match="max_chunks"):
        manager.create_stream(StreamType.CHAT, generator=gen, max_chunks=0)
    with pytest.raises(TypeError, match="bogus, colour"):
        manager.create_stream(StreamType.CHAT, generator=gen, colour=1, bogus=2)
    with pytest.raises(ValueError, match="full_response"):
        manager.create_stream(StreamType.CHAT)
    with pytest.raises(TypeError, match="generator"):
        manager.create_stream(StreamType.CHAT, generator=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunk_delay_seconds"):
        manager.create_stream(StreamType.CHAT, generator=gen, chunk_delay_seconds=-1)
    with pytest.raises(ValueError, match="default_timeout_seconds"):
        StreamManager(default_timeout_seconds=0)
    with pytest.raises(ValueError, match="retention_seconds"):
        StreamManager(retention_seconds=-1)
    assert manager.get_active_stream_count() == 0


async def test_context_extras_reach_the_generator() -> None:
    manager = StreamManager()
    chunks = [
        c
        async for c in manager.create_stream(
            StreamType.CHAT,
            "gpt-4o",
            chat_response(3),
            stream_id="x1",
            include_usage=True,
            created=42,
            metadata={"k": "v"},
        )
    ]
    assert chunks[-1].data["choices"] == []
    assert chunks[-1].data["usage"]["completion_tokens"] == 3
    assert {c.data["created"] for c in chunks} == {42}
    context = manager.get_stream_context("x1")
    assert context is not None
    assert context.metadata == {"k": "v"}
    assert context.endpoint == "/v1/chat/completions"
