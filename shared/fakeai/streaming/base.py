"""Base types of the streaming framework: what a stream is made of, and how it can end.

::

    StreamException                 carries stream_id
    ├── StreamTimeoutException      + timeout_seconds   the stream ran past its timeout
    ├── StreamCancelledException    + reason            cancel_stream() was called
    └── StreamGenerationException   + error: StreamError  the generator raised

A :class:`StreamingGenerator` turns a full response into :class:`StreamChunk` objects at the
times the latency model gives; a :class:`ChunkFormatter` turns chunks into bytes on the wire.

Compatibility surface: FakeAI 0.3's ``fakeai.streaming.base`` names, fields and methods
(``StreamStatus.INITIALIZING``/``RUNNING``, ``StreamContext.request_metadata``,
``elapsed_time()``/``is_timeout()``, the ``to_dict()`` methods, ``message=`` on exceptions).
``StreamError.to_dict()`` is OpenAI's error object, not upstream's; ``docs/library.md`` lists
this and every other difference.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "ChunkFormatter",
    "ErrorSeverity",
    "StreamCancelledException",
    "StreamChunk",
    "StreamContext",
    "StreamError",
    "StreamException",
    "StreamGenerationException",
    "StreamMetrics",
    "StreamStatus",
    "StreamTimeoutException",
    "StreamType",
    "StreamingGenerator",
]


class StreamType(StrEnum):
    CHAT = "chat"
    COMPLETION = "completion"
    AUDIO = "audio"
    REALTIME = "realtime"
    IMAGE = "image"
    """No built-in generator: ``create_stream`` needs ``generator=`` (as upstream, which has
    none for it either)."""
    EMBEDDING = "embedding"
    """No built-in generator, as :attr:`IMAGE`."""


class StreamStatus(StrEnum):
    PENDING = "pending"
    STREAMING = "streaming"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"
    TIMEOUT = "timeout"
    PAUSED = "paused"
    """Upstream's name; no stream of this manager is ever paused."""
    INITIALIZING = "pending"
    """Upstream's name for :attr:`PENDING` (an alias: the same member)."""
    RUNNING = "streaming"
    """Upstream's name for :attr:`STREAMING` (an alias: the same member)."""

    @property
    def is_final(self) -> bool:
        return self not in _LIVE


_LIVE = frozenset((StreamStatus.PENDING, StreamStatus.STREAMING, StreamStatus.PAUSED))


class ErrorSeverity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


@dataclass(slots=True)
class StreamContext:
    """Everything a generator needs to know about one stream."""

    stream_id: str
    stream_type: StreamType
    model: str
    endpoint: str = ""
    timeout_seconds: float | None = 300.0
    """None: no timeout (upstream allows it); the manager always sets one."""
    chunk_delay_seconds: float = 0.0
    """Minimum gap between chunks when no latency model times the stream (0 = none)."""
    prompt_tokens: int = 0
    temperature: float | None = None
    max_tokens: int | None = None
    client_id: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    """The ``created`` field of every chunk (Unix seconds)."""
    start_time: float | None = None
    """Event-loop time the TTFT is measured from; None means "when generation starts". A
    ``time.time()`` value (upstream's meaning) is recognised and converted."""
    seed: int | None = None
    ttft_ms: float | None = None
    """Per-stream override of the profile's TTFT (X-FakeAI-TTFT-Ms)."""
    itl_ms: float | None = None
    """Per-stream override of the profile's ITL (X-FakeAI-ITL-Ms)."""
    cached_tokens: int = 0
    include_usage: bool = False
    """OpenAI ``stream_options.include_usage``: a final usage chunk with ``choices: []``."""
    enable_latency_simulation: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)
    max_chunks: int | None = None
    """Upstream's field; the manager's ``create_stream(max_chunks=)`` enforces the cap."""
    enable_metrics: bool = True
    kv_cache_enabled: bool = True
    request_metadata: dict[str, Any] = field(default_factory=dict)
    """Upstream's name for :attr:`metadata`: after construction both are the same dict."""
    wall_start: float = field(default_factory=time.time)
    """``time.time()`` at construction: :meth:`elapsed_time` counts from it."""

    def elapsed_time(self) -> float:
        """Seconds since the context was made (wall clock)."""
        return time.time() - self.wall_start

    def is_timeout(self) -> bool:
        """Whether :meth:`elapsed_time` is past ``timeout_seconds`` (never, when None)."""
        return self.timeout_seconds is not None and self.elapsed_time() > self.timeout_seconds

    def __post_init__(self) -> None:
        if not isinstance(self.stream_type, StreamType):
            try:
                self.stream_type = StreamType(self.stream_type)
            except ValueError:
                allowed = ", ".join(t.value for t in StreamType)
                raise ValueError(
                    f"stream_type must be one of {allowed}; got {self.stream_type!r}"
                ) from None
        if self.timeout_seconds is not None and not self.timeout_seconds > 0:
            raise ValueError(f"timeout_seconds must be > 0 or None, got {self.timeout_seconds!r}")
        if self.chunk_delay_seconds < 0:
            raise ValueError(f"chunk_delay_seconds must be >= 0, got {self.chunk_delay_seconds!r}")
        if self.prompt_tokens < 0:
            raise ValueError(f"prompt_tokens must be >= 0, got {self.prompt_tokens!r}")
        if self.request_metadata is not self.metadata:
            if self.request_metadata:
                self.metadata.update(self.request_metadata)
            self.request_metadata = self.metadata


@dataclass(slots=True)
class StreamChunk:
    """One unit of a stream: ``data`` is the OpenAI-format object (a dict) or text."""

    chunk_id: str
    sequence_number: int
    data: Any
    chunk_type: str = "chat.completion.chunk"
    token_count: int = 0
    is_first: bool = False
    is_last: bool = False
    timestamp: float = field(default_factory=time.time)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Every field by name (upstream's representation of a chunk)."""
        return {
            "chunk_id": self.chunk_id,
            "sequence_number": self.sequence_number,
            "data": self.data,
            "chunk_type": self.chunk_type,
            "timestamp": self.timestamp,
            "token_count": self.token_count,
            "is_first": self.is_first,
            "is_last": self.is_last,
            "metadata": self.metadata,
        }


@dataclass(slots=True)
class StreamMetrics:
    """Collected while a stream runs; times are ``time.time()`` seconds."""

    stream_id: str
    start_time: float = field(default_factory=time.time)
    first_chunk_time: float | None = None
    last_chunk_time: float | None = None
    end_time: float | None = None
    total_chunks: int = 0
    total_tokens: int = 0
    total_bytes: int = 0
    error_count: int = 0
    retry_count: int = 0
    backpressure_events: int = 0

    @property
    def completion_time(self) -> float | None:
        """Upstream's name for :attr:`end_time`."""
        return self.end_time

    @completion_time.setter
    def completion_time(self, value: float | None) -> None:
        self.end_time = value

    def to_dict(self) -> dict[str, Any]:
        """The counters and times, plus the derived TTFC, duration and tokens/s."""
        return {
            "stream_id": self.stream_id,
            "start_time": self.start_time,
            "first_chunk_time": self.first_chunk_time,
            "last_chunk_time": self.last_chunk_time,
            "completion_time": self.end_time,
            "total_chunks": self.total_chunks,
            "total_tokens": self.total_tokens,
            "total_bytes": self.total_bytes,
            "error_count": self.error_count,
            "retry_count": self.retry_count,
            "backpressure_events": self.backpressure_events,
            "time_to_first_chunk_ms": self.time_to_first_chunk_ms(),
            "total_duration_ms": self.total_duration_ms(),
            "tokens_per_second": self.tokens_per_second(),
        }

    def record_chunk(self, chunk: StreamChunk, now: float | None = None, size: int = 0) -> None:
        now = time.time() if now is None else now
        if self.first_chunk_time is None:
            self.first_chunk_time = now
        self.last_chunk_time = now
        self.total_chunks += 1
        self.total_tokens += chunk.token_count
        self.total_bytes += size

    def finish(self, now: float | None = None) -> None:
        self.end_time = time.time() if now is None else now

    def time_to_first_chunk_ms(self) -> float | None:
        if self.first_chunk_time is None:
            return None
        return (self.first_chunk_time - self.start_time) * 1000.0

    def total_duration_ms(self) -> float:
        end = self.end_time if self.end_time is not None else time.time()
        return (end - self.start_time) * 1000.0

    def tokens_per_second(self) -> float:
        """Output tokens per second of streaming (first chunk to last), 0.0 until known."""
        if self.first_chunk_time is None or self.total_tokens == 0:
            return 0.0
        end = self.end_time or self.last_chunk_time or self.first_chunk_time
        span = end - self.start_time
        return self.total_tokens / span if span > 0 else 0.0


@dataclass(slots=True)
class StreamError:
    """An error a client can act on: a stable code, and whether retrying can help."""

    error_code: str
    message: str
    severity: ErrorSeverity = ErrorSeverity.ERROR
    recoverable: bool = False
    retry_after_seconds: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    timestamp: float = field(default_factory=time.time)
    context: dict[str, Any] = field(default_factory=dict)
    """Upstream's name for :attr:`details`: after construction both are the same dict."""

    def __post_init__(self) -> None:
        if self.context is not self.details:
            if self.context:
                self.details.update(self.context)
            self.context = self.details

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's error object (``{"error": {...}}`` wraps it on the wire).

        Upstream returned its own fields here (``error_code``, ``severity``, ...); this is what
        the formatters put on the wire, so it is the OpenAI shape."""
        return {
            "message": self.message,
            "type": "server_error" if self.severity is ErrorSeverity.CRITICAL else "stream_error",
            "param": None,
            "code": self.error_code,
        }


class StreamException(Exception):
    """``message`` is the full text (``str(exc)``), as upstream's ``.message`` attribute."""

    def __init__(self, stream_id: str, message: str) -> None:
        super().__init__(message)
        self.stream_id = stream_id
        self.message = message


class StreamTimeoutException(StreamException):
    def __init__(self, stream_id: str, timeout_seconds: float, message: str | None = None) -> None:
        text = f"Stream {stream_id} exceeded {timeout_seconds:g}s timeout"
        super().__init__(stream_id, text if message is None else f"{message}: {text}")
        self.timeout_seconds = timeout_seconds


class StreamCancelledException(StreamException):
    """``reason`` says why; upstream's ``message=`` keyword is accepted as the reason."""

    def __init__(
        self, stream_id: str, reason: str = "cancelled", *, message: str | None = None
    ) -> None:
        reason = reason if message is None else message
        super().__init__(stream_id, f"Stream {stream_id} cancelled: {reason}")
        self.reason = reason


class StreamGenerationException(StreamException):
    def __init__(self, stream_id: str, error: StreamError, message: str | None = None) -> None:
        text = f"Stream {stream_id} failed: {error.message}"
        super().__init__(stream_id, text if message is None else f"{message}: {text}")
        self.error = error


class StreamingGenerator(ABC):
    """Turns a full response into timed chunks."""

    @abstractmethod
    def generate(self, context: StreamContext, full_response: Any) -> AsyncIterator[StreamChunk]:
        """An async iterator of chunks (implement as ``async def ... yield``)."""


class ChunkFormatter(ABC):
    """Turns chunks into what goes on the wire."""

    @abstractmethod
    def format(self, chunk: StreamChunk) -> str: ...

    @abstractmethod
    def format_error(self, error: StreamError) -> str: ...

    @abstractmethod
    def format_done(self) -> str: ...
