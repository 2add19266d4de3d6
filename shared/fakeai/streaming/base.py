"""Base types of the streaming framework: what a stream is made of, and how it can end.

::

    StreamException                 carries stream_id
    ├── StreamTimeoutException      + timeout_seconds   the stream ran past its timeout
    ├── StreamCancelledException    + reason            cancel_stream() was called
    └── StreamGenerationException   + error: StreamError  the generator raised

A :class:`StreamingGenerator` turns a full response into :class:`StreamChunk` objects at the
times the latency model gives; a :class:`ChunkFormatter` turns chunks into bytes on the wire.
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


class StreamStatus(StrEnum):
    PENDING = "pending"
    STREAMING = "streaming"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"
    TIMEOUT = "timeout"

    @property
    def is_final(self) -> bool:
        return self not in (StreamStatus.PENDING, StreamStatus.STREAMING)


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
    timeout_seconds: float = 300.0
    chunk_delay_seconds: float = 0.0
    """Minimum gap between chunks when no latency model times the stream (0 = none)."""
    prompt_tokens: int = 0
    temperature: float | None = None
    max_tokens: int | None = None
    client_id: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    """The ``created`` field of every chunk (Unix seconds)."""
    start_time: float | None = None
    """Event-loop time the TTFT is measured from; None means "when generation starts"."""
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

    def __post_init__(self) -> None:
        if not isinstance(self.stream_type, StreamType):
            try:
                self.stream_type = StreamType(self.stream_type)
            except ValueError:
                allowed = ", ".join(t.value for t in StreamType)
                raise ValueError(
                    f"stream_type must be one of {allowed}; got {self.stream_type!r}"
                ) from None
        if self.timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be > 0, got {self.timeout_seconds!r}")
        if self.chunk_delay_seconds < 0:
            raise ValueError(f"chunk_delay_seconds must be >= 0, got {self.chunk_delay_seconds!r}")
        if self.prompt_tokens < 0:
            raise ValueError(f"prompt_tokens must be >= 0, got {self.prompt_tokens!r}")


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

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's error object (``{"error": {...}}`` wraps it on the wire)."""
        return {
            "message": self.message,
            "type": "server_error" if self.severity is ErrorSeverity.CRITICAL else "stream_error",
            "param": None,
            "code": self.error_code,
        }


class StreamException(Exception):
    def __init__(self, stream_id: str, message: str) -> None:
        super().__init__(message)
        self.stream_id = stream_id


class StreamTimeoutException(StreamException):
    def __init__(self, stream_id: str, timeout_seconds: float) -> None:
        super().__init__(stream_id, f"Stream {stream_id} exceeded {timeout_seconds:g}s timeout")
        self.timeout_seconds = timeout_seconds


class StreamCancelledException(StreamException):
    def __init__(self, stream_id: str, reason: str = "cancelled") -> None:
        super().__init__(stream_id, f"Stream {stream_id} cancelled: {reason}")
        self.reason = reason


class StreamGenerationException(StreamException):
    def __init__(self, stream_id: str, error: StreamError) -> None:
        super().__init__(stream_id, f"Stream {stream_id} failed: {error.message}")
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
