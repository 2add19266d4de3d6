"""One StreamManager (and its trackers) used from several threads, each with its own event loop.

The framework document calls the framework thread-safe. These tests hold the manager to it with
real threads: streams created, run and finished concurrently on several loops leave consistent
counts everywhere, and ``cancel_stream()`` called from another thread stops a stream that is
waiting inside its generator (the interrupt must run on the stream's own loop).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from fakeai.metrics import MetricsTracker
from fakeai.streaming import StreamCancelledException, StreamManager, StreamStatus, StreamType
from fakeai.streaming_metrics import StreamingMetricsTracker

THREADS = 4
STREAMS_PER_THREAD = 25


def _chat(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-t",
        "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
    }


def test_streams_on_several_threads_leave_consistent_counts() -> None:
    metrics, streaming = MetricsTracker(), StreamingMetricsTracker()
    manager = StreamManager(
        metrics_tracker=metrics,
        streaming_metrics_tracker=streaming,
        enable_latency_simulation=False,
    )
    texts: dict[str, str] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    async def run_thread(t: int) -> None:
        async def one(i: int) -> None:
            sid = f"t{t}-s{i}"
            parts = [
                chunk.data["choices"][0]["delta"].get("content", "")
                async for chunk in manager.create_stream(
                    StreamType.CHAT, full_response=_chat(f"thread {t} stream {i}"), stream_id=sid
                )
                if chunk.data["choices"]
            ]
            texts[sid] = "".join(parts)

        await asyncio.gather(*(one(i) for i in range(STREAMS_PER_THREAD)))

    def worker(t: int) -> None:
        try:
            start.wait()
            asyncio.run(run_thread(t))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not any(th.is_alive() for th in threads)
    assert errors == []
    total = THREADS * STREAMS_PER_THREAD
    assert len(texts) == total
    assert all(texts[f"t{t}-s{i}"] == f"thread {t} stream {i}" for t, i in _ids())
    assert all(manager.get_stream_status(f"t{t}-s{i}") is StreamStatus.COMPLETED for t, i in _ids())
    assert manager.get_active_stream_count() == 0
    assert metrics.get_streaming_stats()["completed_streams"] == total
    assert streaming.get_completed_stream_count() == total
    assert streaming.get_active_stream_count() == 0


def _ids() -> list[tuple[int, int]]:
    return [(t, i) for t in range(THREADS) for i in range(STREAMS_PER_THREAD)]


def test_cancel_from_another_thread_interrupts_a_waiting_stream() -> None:
    manager = StreamManager(enable_latency_simulation=False)
    first_chunk = threading.Event()
    outcome: list[BaseException | None] = []

    async def consume() -> None:
        # 60 s between chunks: only the cross-thread interrupt can end this stream early.
        stream = manager.create_stream(
            StreamType.CHAT,
            full_response=_chat("one two three four"),
            stream_id="far",
            chunk_delay_seconds=60.0,
        )
        try:
            async for _ in stream:
                first_chunk.set()
        except StreamCancelledException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    th = threading.Thread(target=lambda: asyncio.run(consume()))
    th.start()
    assert first_chunk.wait(timeout=30)
    assert manager.cancel_stream("far", reason="operator") is True
    th.join(timeout=30)
    assert not th.is_alive(), "the stream's loop never saw the interrupt"
    assert len(outcome) == 1
    assert isinstance(outcome[0], StreamCancelledException)
    assert outcome[0].reason == "operator"
    assert manager.get_stream_status("far") is StreamStatus.CANCELLED
    assert manager.cancel_stream("far") is False


@pytest.mark.parametrize("closed", [False, True])
def test_cancel_from_a_thread_without_a_loop_before_start(closed: bool) -> None:
    """A pending stream cancelled from a plain thread never starts, on any loop."""
    manager = StreamManager(enable_latency_simulation=False)
    stream = manager.create_stream(StreamType.CHAT, full_response=_chat("hi"), stream_id="p")
    results: list[bool] = []
    th = threading.Thread(target=lambda: results.append(manager.cancel_stream("p")))
    th.start()
    th.join(timeout=30)
    assert results == [True]

    async def first() -> None:
        if closed:
            await stream.aclose()
            return
        with pytest.raises(StreamCancelledException):
            await stream.__anext__()

    asyncio.run(first())
    assert manager.get_stream_status("p") is StreamStatus.CANCELLED
