"""StreamManager internals: the per-stream record and the hook calls around a stream's life.

The hooks (metrics tracker, streaming metrics tracker, KV-cache router and metrics, latency
model) are called at three points: when a stream starts (:func:`started`), for each chunk while
metrics are on (:func:`on_chunk`) and when it ends (:func:`finished`). They read the hooks from
the manager at call time, so a hook attached after construction is used too.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fakeai.streaming.base import (
    StreamCancelledException,
    StreamChunk,
    StreamContext,
    StreamError,
    StreamException,
    StreamGenerationException,
    StreamMetrics,
    StreamStatus,
    StreamTimeoutException,
)
from fakeai.streaming.sse import chunk_text

if TYPE_CHECKING:
    from fakeai.streaming.manager import StreamManager

__all__ = [
    "StreamRecord",
    "finished",
    "generation_error",
    "interrupt",
    "interrupt_from_any_thread",
    "on_chunk",
    "started",
    "status_of",
]

# The lifecycle lines are the manager's: logged under its name, as before this module existed.
logger = logging.getLogger("fakeai.streaming.manager")


@dataclass(slots=True, eq=False)
class StreamRecord:
    """One stream's state, owned by its ``StreamManager``."""

    context: StreamContext
    metrics: StreamMetrics
    max_chunks: int | None
    timeout: float
    """Seconds the stream may run (the context's ``timeout_seconds``, or the manager's default)."""
    loop: asyncio.AbstractEventLoop | None = None
    """The loop that runs the stream, once it started: interrupts from other threads go there."""
    status: StreamStatus = StreamStatus.PENDING
    armed: bool = False
    """The stream's task is awaiting the generator (not the consumer): it may be interrupted."""
    task: asyncio.Task[object] | None = None
    """The task that last asked for a chunk: the one an interrupt cancels."""
    deadline_handle: asyncio.TimerHandle | None = None
    """The stream's single timeout timer, cancelled when the stream ends."""
    interrupted: bool = False
    """The manager cancelled ``task`` (timeout or cancel_stream) and has not yet uncancelled it."""
    cancelling_before: int = 0
    """``task.cancelling()`` before the interrupt: a higher count after ``uncancel()`` means a
    foreign cancellation is pending too, and that one must propagate."""
    cancel_reason: str = "cancelled"
    finish_reason: str | None = None
    expires_at: float = 0.0
    kv: tuple[str, list[int]] | None = None
    """(worker_id, prompt token ids) when the KV-cache router placed the stream."""


def status_of(exc: StreamException) -> StreamStatus:
    """The final status a stream exception stands for."""
    if isinstance(exc, StreamTimeoutException):
        return StreamStatus.TIMEOUT
    if isinstance(exc, StreamCancelledException):
        return StreamStatus.CANCELLED
    return StreamStatus.FAILED


def generation_error(sid: str, exc: BaseException) -> StreamGenerationException:
    """A generator's own exception as the stream's :class:`StreamGenerationException`."""
    return StreamGenerationException(
        sid,
        StreamError(
            error_code="generation_error",
            message=str(exc) or type(exc).__name__,
            details={"exception": type(exc).__name__},
        ),
    )


def started(manager: StreamManager, rec: StreamRecord) -> None:
    """Place the stream on a KV-cache worker and tell the latency model and trackers."""
    ctx = rec.context
    sid = ctx.stream_id
    router = manager.kv_cache_router
    if router is not None:
        tokens = ctx.metadata.get("prompt_token_ids")
        if isinstance(tokens, list) and tokens:
            worker, matched, _ = router.route_request(
                tokens, estimated_output_tokens=ctx.max_tokens or 0
            )
            router.start_request(worker)
            rec.kv = (worker, tokens)
            if ctx.cached_tokens == 0:
                ctx.cached_tokens = matched
            if manager.kv_cache_metrics is not None:
                manager.kv_cache_metrics.record_cache_lookup(ctx.endpoint, len(tokens), matched)
    if ctx.enable_latency_simulation and manager.latency_manager is not None:
        _count_load(manager.latency_manager, ctx.model, started=True)
    if manager.enable_metrics:
        if manager.metrics_tracker is not None:
            manager.metrics_tracker.track_request(ctx.endpoint)
            manager.metrics_tracker.start_stream(sid, ctx.endpoint)
        streaming = manager.streaming_metrics_tracker
        if streaming is not None:
            # client_id (client behaviour statistics) is passed only when the stream has one,
            # so a hook without that keyword keeps working.
            start: Any = streaming.start_stream
            extra = {} if ctx.client_id is None else {"client_id": ctx.client_id}
            start(
                sid,
                ctx.model,
                prompt_tokens=ctx.prompt_tokens,
                temperature=ctx.temperature,
                max_tokens=ctx.max_tokens,
                **extra,
            )
    logger.debug("stream %s started (%s, %s)", sid, ctx.stream_type.value, ctx.model)


def _count_load(latency_manager: object, model: str, *, started: bool) -> None:
    """``stream_started``/``stream_finished(model)``, or a FakeAI 0.3 style manager's
    ``start_request``/``end_request()`` when it has only those."""
    method = getattr(latency_manager, "stream_started" if started else "stream_finished", None)
    if method is not None:
        method(model)
        return
    legacy = getattr(latency_manager, "start_request" if started else "end_request", None)
    if legacy is not None:
        legacy()


def on_chunk(manager: StreamManager, rec: StreamRecord, chunk: StreamChunk) -> None:
    """Record one chunk (first-token time, tokens) with the trackers."""
    sid = rec.context.stream_id
    tracker = manager.metrics_tracker
    if tracker is not None:
        if rec.metrics.total_chunks == 1:
            tracker.track_stream_first_token(sid)
        if chunk.token_count:
            tracker.track_stream_token(sid, chunk.token_count)
    streaming = manager.streaming_metrics_tracker
    if streaming is not None and chunk.token_count:
        streaming.record_token(sid, chunk_text(chunk.data))


def finished(
    manager: StreamManager,
    rec: StreamRecord,
    status: StreamStatus,
    error: str | None,
    client_cancelled: bool,
) -> None:
    """Release the KV-cache worker and latency slot, report the outcome, log one line."""
    ctx = rec.context
    sid = ctx.stream_id
    if rec.kv is not None and manager.kv_cache_router is not None:
        worker, tokens = rec.kv
        manager.kv_cache_router.complete_request(worker, tokens, rec.metrics.total_tokens)
    if ctx.enable_latency_simulation and manager.latency_manager is not None:
        _count_load(manager.latency_manager, ctx.model, started=False)
    if manager.enable_metrics:
        _report(manager, rec, status, error, client_cancelled)
    if error is None:
        logger.debug("stream %s %s after %d chunks", sid, status.value, rec.metrics.total_chunks)
    else:
        logger.info("stream %s %s: %s", sid, status.value, error)


def _report(
    manager: StreamManager,
    rec: StreamRecord,
    status: StreamStatus,
    error: str | None,
    client_cancelled: bool,
) -> None:
    ctx = rec.context
    sid, endpoint = ctx.stream_id, ctx.endpoint
    ok = status in (StreamStatus.COMPLETED, StreamStatus.CANCELLED)
    tracker = manager.metrics_tracker
    if tracker is not None:
        if ok:
            tokens = rec.metrics.total_tokens
            if tokens:
                tracker.track_tokens(endpoint, tokens)
            tracker.complete_stream(sid, endpoint)
            tracker.track_response(endpoint, rec.metrics.total_duration_ms() / 1000.0)
        else:
            tracker.fail_stream(sid, endpoint, error or status.value)
    streaming = manager.streaming_metrics_tracker
    if streaming is not None:
        if ok:
            reason = rec.finish_reason if status is StreamStatus.COMPLETED else None
            streaming.complete_stream(sid, reason, client_cancelled=client_cancelled)
        else:
            streaming.fail_stream(sid, error or status.value)


def interrupt(rec: StreamRecord) -> None:
    """Cancel the stream's task if it is awaiting the generator (timer and cancel_stream).

    While the consumer holds a chunk nothing is cancelled: its next step sees the status or the
    deadline and raises. ``rec.interrupted`` marks the cancellation as ours, so the manager
    can ``uncancel()`` it and tell it from a foreign one.
    """
    task = rec.task
    if rec.armed and not rec.interrupted and task is not None:
        rec.interrupted = True
        task.cancel()


def interrupt_from_any_thread(rec: StreamRecord) -> None:
    """:func:`interrupt`, run on the stream's own loop when called from another thread (asyncio
    objects are not thread-safe: ``Task.cancel`` must run on the task's loop)."""
    loop = rec.loop
    if loop is None:
        return
    try:
        here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    if here is loop:
        interrupt(rec)
        return
    try:
        loop.call_soon_threadsafe(interrupt, rec)
    except RuntimeError:  # the loop is closed: the stream is gone with it
        pass
