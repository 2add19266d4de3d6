"""StreamManager: runs one generator per stream under a timeout, with status, metrics and hooks.

Lifecycle of a stream (``StreamStatus``)::

    PENDING ──first __anext__──▶ STREAMING ──▶ COMPLETED   generator exhausted, max_chunks
       │                            │                       reached, or the consumer closed
       │                            │                       the iterator after the last chunk
       │                            ├──▶ CANCELLED   cancel_stream(), or the consumer closed
       │                            │                the iterator early (client_cancelled)
       │                            ├──▶ TIMEOUT     past timeout_seconds
       │                            └──▶ FAILED      the generator raised
       └──cancel_stream()──▶ CANCELLED

How the timeout and cancellation work: each stream has ONE loop timer at its deadline
(``loop.call_at``) and an ``armed`` flag that is true only while the manager awaits the
generator. The timer and ``cancel_stream()`` cancel the stream's task only when it is armed, so
a generator that hangs inside one chunk is interrupted, and the consumer's own code never is
(the hazard of cancel scopes across ``yield`` in async generators, PEP 789). When the consumer
holds a chunk they do nothing: its next step checks the status and the deadline and raises.
The interrupt is marked on the stream and undone with ``Task.uncancel()``, which also tells it
from a foreign cancellation of the consumer's task (that one propagates), as
``asyncio.timeout`` does. Per chunk this costs a few attribute writes, not a loop timer
cancelled and re-created twice (``asyncio.Timeout.reschedule``: ~15% of a producer's CPU).

Threads: one manager may serve several event loops in several threads (each stream runs on the
loop that iterates it). Its registry sits behind one ``threading.Lock`` taken a few times per
stream (never per chunk), and ``cancel_stream()`` from another thread hands the interrupt to the
stream's own loop (``call_soon_threadsafe``). Iterate each stream from one task at a time, on
one loop. The default trackers, latency manager and KV-cache classes are thread-safe too.

Compatibility with FakeAI 0.3 (``fakeai.streaming.manager``): the same constructor and
``create_stream`` keywords (plus ``**context_extras``); the query methods and
``cancel_stream`` are plain methods, not coroutines, and ``get_stream_metrics`` returns the
:class:`StreamMetrics` (``.to_dict()`` is upstream's dict); see ``docs/library.md``.

Finished streams stay queryable for ``retention_seconds``, and at most
``max_finished_streams`` of them (the oldest go first), so a long-running process keeps bounded
memory whatever its request rate; they are pruned lazily (no timer per finished stream).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator
from typing import Any

from fakeai.hooks import CacheMetricsHook, CacheRouterHook, MetricsHook, StreamingMetricsHook
from fakeai.streaming import _lifecycle
from fakeai.streaming._lifecycle import StreamRecord, interrupt
from fakeai.streaming.base import (
    StreamCancelledException,
    StreamChunk,
    StreamContext,
    StreamException,
    StreamingGenerator,
    StreamMetrics,
    StreamStatus,
    StreamTimeoutException,
    StreamType,
)
from fakeai.streaming.generators import (
    AudioStreamingGenerator,
    ChatStreamingGenerator,
    CompletionStreamingGenerator,
    RealtimeStreamingGenerator,
)
from fakeai.timing import LatencyModel

__all__ = ["CONTEXT_EXTRAS", "StreamManager"]

CONTEXT_EXTRAS = frozenset(
    {"created", "start_time", "seed", "ttft_ms", "itl_ms", "cached_tokens", "include_usage"}
    | {"metadata", "request_metadata"}
)
"""StreamContext fields that ``create_stream`` accepts as extra keyword arguments."""

# Per stream type: the default generator, the stream id prefix (OpenAI's), the endpoint.
_DEFAULTS: dict[StreamType, tuple[type[StreamingGenerator], str, str]] = {
    StreamType.CHAT: (ChatStreamingGenerator, "chatcmpl-", "/v1/chat/completions"),
    StreamType.COMPLETION: (CompletionStreamingGenerator, "cmpl-", "/v1/completions"),
    StreamType.AUDIO: (AudioStreamingGenerator, "chatcmpl-", "/v1/chat/completions"),
    StreamType.REALTIME: (RealtimeStreamingGenerator, "resp_", "/v1/realtime"),
}
_NO_DEFAULT = (StreamingGenerator, "stream-", "")
"""Stream types without a built-in generator (image, embedding): ``generator=`` is required."""
_STREAMING = StreamStatus.STREAMING


class StreamManager:
    """Creates streams, enforces their timeout, tracks status and metrics, calls the hooks.

    Args:
        metrics_tracker: a :class:`fakeai.hooks.MetricsHook` (``fakeai.metrics.MetricsTracker``).
        streaming_metrics_tracker: a :class:`fakeai.hooks.StreamingMetricsHook`.
        latency_manager: a :class:`fakeai.timing.LatencyModel` that times the default
            generators and counts concurrent streams per model.
        kv_cache_router, kv_cache_metrics: when a stream's ``metadata`` holds
            ``prompt_token_ids``, the router picks a worker, its matched tokens become the
            context's ``cached_tokens`` (a shorter TTFT), and the lookup is recorded.
        default_timeout_seconds: timeout of streams that do not set one.
        enable_metrics: call the metrics hooks.
        enable_latency_simulation: default of ``create_stream(enable_latency_simulation=)``.
        retention_seconds: how long a finished stream's status and metrics stay queryable.
        max_finished_streams: how many finished streams stay queryable at most (~1 KiB
            each); past it the oldest are forgotten before their retention ends.
    """

    def __init__(
        self,
        metrics_tracker: MetricsHook | None = None,
        streaming_metrics_tracker: StreamingMetricsHook | None = None,
        latency_manager: LatencyModel | None = None,
        kv_cache_router: CacheRouterHook | None = None,
        kv_cache_metrics: CacheMetricsHook | None = None,
        default_timeout_seconds: float = 300.0,
        enable_metrics: bool = True,
        enable_latency_simulation: bool = True,
        retention_seconds: float = 300.0,
        max_finished_streams: int = 10_000,
    ) -> None:
        if not default_timeout_seconds > 0:
            raise ValueError(
                f"default_timeout_seconds must be > 0; got {default_timeout_seconds!r}"
            )
        if not retention_seconds >= 0:
            raise ValueError(f"retention_seconds must be >= 0; got {retention_seconds!r}")
        if max_finished_streams < 0:
            raise ValueError(f"max_finished_streams must be >= 0; got {max_finished_streams!r}")
        self.max_finished_streams = max_finished_streams
        self.metrics_tracker = metrics_tracker
        self.streaming_metrics_tracker = streaming_metrics_tracker
        self.latency_manager = latency_manager
        self.kv_cache_router = kv_cache_router
        self.kv_cache_metrics = kv_cache_metrics
        self.default_timeout_seconds = float(default_timeout_seconds)
        self.enable_metrics = enable_metrics
        self.enable_latency_simulation = enable_latency_simulation
        self.retention_seconds = float(retention_seconds)
        self._streams: dict[str, StreamRecord] = {}
        self._active: set[str] = set()
        # Finished streams in finishing order (their expiry times increase: one retention for
        # all), and never-started ones in creation order with the time to forget them.
        self._expiry: deque[tuple[float, str]] = deque()
        self._pending: dict[str, float] = {}
        self._generators: dict[tuple[StreamType, bool], StreamingGenerator] = {}
        self._lock = threading.Lock()

    # -- creating ------------------------------------------------------------------------------

    def create_stream(
        self,
        stream_type: StreamType | str,
        model: str = "gpt-4o",
        full_response: Any = None,
        endpoint: str = "",
        *,
        stream_id: str | None = None,
        prompt_tokens: int = 0,
        temperature: float | None = None,
        max_tokens: int | None = None,
        client_id: str | None = None,
        timeout_seconds: float | None = None,
        chunk_delay_seconds: float = 0.0,
        enable_latency_simulation: bool | None = None,
        generator: StreamingGenerator | None = None,
        max_chunks: int | None = None,
        **context_extras: Any,
    ) -> AsyncGenerator[StreamChunk, None]:
        """Register a stream and return its chunks as an async generator (``aclose()`` ends it).

        Arguments are checked here (ValueError/TypeError naming the argument); the stream
        starts (status STREAMING, timeout clock running) at the first ``__anext__``. The
        iterator raises :class:`StreamTimeoutException`, :class:`StreamCancelledException` or
        :class:`StreamGenerationException` when the stream ends that way. ``endpoint``
        defaults to the stream type's OpenAI path; ``context_extras`` are the
        :data:`CONTEXT_EXTRAS` fields of :class:`StreamContext`.
        """
        kind = self._stream_type(stream_type)
        unknown = sorted(set(context_extras) - CONTEXT_EXTRAS)
        if unknown:
            raise TypeError(
                f"create_stream() got unexpected keyword argument(s) {', '.join(unknown)}; "
                f"allowed extras: {', '.join(sorted(CONTEXT_EXTRAS))}"
            )
        timeout = self.default_timeout_seconds if timeout_seconds is None else timeout_seconds
        if not timeout > 0:
            raise ValueError(f"timeout_seconds must be > 0; got {timeout_seconds!r}")
        if max_chunks is not None and (
            isinstance(max_chunks, bool) or not isinstance(max_chunks, int) or max_chunks < 1
        ):
            raise ValueError(f"max_chunks must be an integer >= 1 or None; got {max_chunks!r}")
        if generator is not None and not hasattr(generator, "generate"):
            raise TypeError(
                f"generator must be a StreamingGenerator; got {type(generator).__name__}"
            )
        if generator is None and full_response is None:
            raise ValueError("full_response is required unless a custom generator is given")
        _, prefix, default_endpoint = _DEFAULTS.get(kind, _NO_DEFAULT)
        if generator is None and kind not in _DEFAULTS:
            raise ValueError(
                f"stream_type {kind.value!r} has no built-in generator; pass generator="
            )
        simulate = (
            self.enable_latency_simulation
            if enable_latency_simulation is None
            else enable_latency_simulation
        )
        sid = stream_id or f"{prefix}{secrets.token_hex(12)}"
        context = StreamContext(
            stream_id=sid,
            stream_type=kind,
            model=model,
            endpoint=endpoint or default_endpoint,
            timeout_seconds=float(timeout),
            chunk_delay_seconds=chunk_delay_seconds,
            prompt_tokens=prompt_tokens,
            temperature=temperature,
            max_tokens=max_tokens,
            client_id=client_id,
            enable_latency_simulation=simulate,
            **context_extras,
        )
        rec = StreamRecord(context, StreamMetrics(sid), max_chunks, float(timeout))
        with self._lock:
            self._prune()
            old = self._streams.get(sid)
            if old is not None and not old.status.is_final:
                raise ValueError(f"stream_id {sid!r} is already in use by an active stream")
            gen = generator if generator is not None else self._default_generator(kind, simulate)
            self._streams[sid] = rec
            self._active.add(sid)
            # A stream that is never iterated is forgotten once its timeout and retention pass.
            self._pending[sid] = time.monotonic() + timeout + self.retention_seconds
        return self._run(rec, gen, full_response)

    @staticmethod
    def _stream_type(value: Any) -> StreamType:
        if isinstance(value, StreamType):
            return value
        try:
            return StreamType(value)
        except (ValueError, TypeError):
            allowed = ", ".join(t.value for t in StreamType)
            raise ValueError(f"stream_type must be one of {allowed}; got {value!r}") from None

    def _default_generator(self, kind: StreamType, simulate: bool) -> StreamingGenerator:
        # Generators keep no per-stream state, so one instance per (type, timing) serves all.
        key = (kind, simulate)
        gen = self._generators.get(key)
        if gen is None:
            cls: Any = _DEFAULTS[kind][0]
            gen = cls(latency_manager=self.latency_manager if simulate else None)
            self._generators[key] = gen
        return gen

    # -- running -------------------------------------------------------------------------------

    async def _run(
        self, rec: StreamRecord, gen: StreamingGenerator, full_response: Any
    ) -> AsyncGenerator[StreamChunk, None]:
        ctx = rec.context
        sid = ctx.stream_id
        loop = rec.loop = asyncio.get_running_loop()
        deadline = loop.time() + rec.timeout
        with self._lock:
            if rec.status is not StreamStatus.PENDING:  # cancelled before it started
                raise StreamCancelledException(sid, rec.cancel_reason)
            rec.status = _STREAMING
            self._pending.pop(sid, None)
        m = rec.metrics
        max_chunks = rec.max_chunks or 0
        hooks = self.enable_metrics and (
            self.metrics_tracker is not None or self.streaming_metrics_tracker is not None
        )
        final = StreamStatus.COMPLETED
        error: str | None = None
        chunk: StreamChunk | None = None
        source: Any = None
        current_task = asyncio.current_task
        try:
            _lifecycle.started(self, rec)
            source = gen.generate(ctx, full_response)
            rec.deadline_handle = loop.call_at(deadline, interrupt, rec)
            anext = source.__anext__
            while True:
                # The task (and its cancel count, to tell our interrupt from a foreign one)
                # that awaits this chunk: the consumer may ask for each chunk from a new task.
                rec.task = task = current_task(loop)
                rec.cancelling_before = task.cancelling() if task is not None else 0
                rec.armed = True
                try:
                    chunk = await anext()
                except StopAsyncIteration:
                    break
                rec.armed = False
                if rec.interrupted:  # the generator swallowed the interrupt: end anyway
                    raise asyncio.CancelledError
                now = time.time()
                if m.first_chunk_time is None:
                    m.first_chunk_time = now
                m.last_chunk_time = now
                m.total_chunks += 1
                m.total_tokens += chunk.token_count
                if chunk.metadata:
                    rec.finish_reason = chunk.metadata.get("finish_reason", rec.finish_reason)
                if hooks:
                    _lifecycle.on_chunk(self, rec, chunk)
                if m.total_chunks == max_chunks:
                    chunk.is_last = True
                yield chunk
                if m.total_chunks == max_chunks:
                    break
                if rec.status is not _STREAMING:
                    raise StreamCancelledException(sid, rec.cancel_reason)
                if loop.time() >= deadline:
                    raise StreamTimeoutException(sid, rec.timeout)
            rec.armed = False
            if rec.interrupted:  # the generator swallowed the interrupt and ended
                raise asyncio.CancelledError
            if rec.status is not _STREAMING:  # cancelled as the generator ended
                raise StreamCancelledException(sid, rec.cancel_reason)
        except StreamException as exc:
            final, error = _lifecycle.status_of(exc), str(exc)
            raise
        except GeneratorExit:
            # The consumer closed the iterator: a normal end if it had the last chunk.
            if chunk is None or not chunk.is_last:
                final = StreamStatus.CANCELLED
            raise
        except asyncio.CancelledError:
            final = StreamStatus.CANCELLED
            task = rec.task
            if rec.interrupted and task is not None:
                rec.interrupted = False
                # Only our interrupt is pending: it ends the stream as a timeout or cancel.
                if task.uncancel() <= rec.cancelling_before:
                    if rec.status is StreamStatus.CANCELLED:
                        raise StreamCancelledException(sid, rec.cancel_reason) from None
                    final, error = StreamStatus.TIMEOUT, f"timeout after {rec.timeout:g}s"
                    raise StreamTimeoutException(sid, rec.timeout) from None
            raise
        except Exception as exc:
            final, error = StreamStatus.FAILED, str(exc) or type(exc).__name__
            raise _lifecycle.generation_error(sid, exc) from exc
        finally:
            rec.armed = False
            if rec.deadline_handle is not None:
                rec.deadline_handle.cancel()
                rec.deadline_handle = None
            if rec.interrupted and rec.task is not None:
                # Interrupted, but the generator ended another way: take our cancel back.
                rec.interrupted = False
                rec.task.uncancel()
            rec.task = None
            # CANCELLED while the status still says STREAMING: the consumer left, not
            # cancel_stream() (which sets the status itself).
            client_cancelled = final is StreamStatus.CANCELLED and rec.status is _STREAMING
            self._finish(rec, final, error, client_cancelled)
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()

    def _finish(
        self, rec: StreamRecord, status: StreamStatus, error: str | None, client_cancelled: bool
    ) -> None:
        with self._lock:
            rec.status = status
            rec.metrics.finish()
            self._active.discard(rec.context.stream_id)
            self._remember(rec, time.monotonic() + self.retention_seconds)
        _lifecycle.finished(self, rec, status, error, client_cancelled)

    # -- control and queries ---------------------------------------------------------------------

    def cancel_stream(self, stream_id: str, reason: str = "cancelled") -> bool:
        """Stop a pending or running stream; False if it is unknown or already finished.

        The consumer's iterator raises :class:`StreamCancelledException` promptly: at once if
        it is waiting for a chunk (even inside a generator's sleep), else at its next step.
        Safe from any thread: the interrupt runs on the stream's own loop.
        """
        with self._lock:
            rec = self._streams.get(stream_id)
            if rec is None or rec.status.is_final:
                return False
            rec.cancel_reason = reason
            pending = rec.status is StreamStatus.PENDING
            rec.status = StreamStatus.CANCELLED
            if pending:
                self._active.discard(stream_id)
                self._pending.pop(stream_id, None)
                rec.metrics.finish()
                self._remember(rec, time.monotonic() + self.retention_seconds)
                return True
        _lifecycle.interrupt_from_any_thread(rec)  # else its next step raises
        return True

    def get_stream_status(self, stream_id: str) -> StreamStatus | None:
        """The stream's status; a finished stream's final one for ``retention_seconds``."""
        with self._lock:
            self._prune()
            rec = self._streams.get(stream_id)
        return rec.status if rec is not None else None

    def get_stream_metrics(self, stream_id: str) -> StreamMetrics | None:
        """The stream's metrics (live while it runs, final after), None when unknown."""
        with self._lock:
            self._prune()
            rec = self._streams.get(stream_id)
        return rec.metrics if rec is not None else None

    def get_stream_context(self, stream_id: str) -> StreamContext | None:
        with self._lock:
            rec = self._streams.get(stream_id)
        return rec.context if rec is not None else None

    def active_streams(self) -> list[str]:
        """Ids of the streams that are pending or running."""
        with self._lock:
            return list(self._active)

    def get_active_stream_count(self) -> int:
        with self._lock:
            return len(self._active)

    # -- retention -------------------------------------------------------------------------------

    # Both run under self._lock.

    def _remember(self, rec: StreamRecord, expires_at: float) -> None:
        rec.expires_at = expires_at
        expiry = self._expiry
        expiry.append((expires_at, rec.context.stream_id))
        while len(expiry) > self.max_finished_streams:
            _, sid = expiry.popleft()
            old = self._streams.get(sid)
            # A reused stream_id may be running again: only a finished record is forgotten.
            if old is not None and old.status.is_final:
                del self._streams[sid]

    def _prune(self) -> None:
        now = time.monotonic()
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            _, sid = expiry.popleft()
            rec = self._streams.get(sid)
            # A reused stream_id has a newer record: only its own latest entry removes it.
            if rec is not None and rec.status.is_final and rec.expires_at <= now:
                del self._streams[sid]
        pending = self._pending
        while pending:
            sid, forget_at = next(iter(pending.items()))
            if forget_at > now:
                break
            del pending[sid]
            rec = self._streams.get(sid)
            if rec is not None and rec.status is StreamStatus.PENDING:
                del self._streams[sid]
                self._active.discard(sid)
