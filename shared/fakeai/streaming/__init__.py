"""The unified streaming framework: a manager, generators per stream type, wire formatters and
chunking utilities.

``StreamManager.create_stream()`` runs a :class:`StreamingGenerator` (chat, completion, audio,
realtime, or your own) under a timeout and yields :class:`StreamChunk` objects;
``SSEFormatter`` / ``JSONLinesFormatter`` / ``PlainTextFormatter`` put them on the wire.

Compatibility surface: this package is the framework document's (``docs/streaming-framework.md``)
and a drop-in for FakeAI 0.3's ``fakeai.streaming``: every public name of that package, under
the same module paths (``generators.chat_stream`` and the other upstream module names
included), with the same call shapes. Where upstream broke OpenAI's wire format this package
keeps it correct; ``docs/library.md`` lists every deliberate difference.
"""

from fakeai.streaming.base import (
    ChunkFormatter,
    ErrorSeverity,
    StreamCancelledException,
    StreamChunk,
    StreamContext,
    StreamError,
    StreamException,
    StreamGenerationException,
    StreamingGenerator,
    StreamMetrics,
    StreamStatus,
    StreamTimeoutException,
    StreamType,
)
from fakeai.streaming.chunking import AdaptiveChunker, DeltaGenerator, ProgressTracker, TokenChunker
from fakeai.streaming.generators import (
    AudioStreamingGenerator,
    ChatStreamingGenerator,
    CompletionStreamingGenerator,
    RealtimeStreamingGenerator,
)
from fakeai.streaming.manager import StreamManager
from fakeai.streaming.sse import (
    JSONLinesFormatter,
    OpenAIChatFormatter,
    OpenAICompletionFormatter,
    PlainTextFormatter,
    SSEFormatter,
)

__all__ = [
    "AdaptiveChunker",
    "AudioStreamingGenerator",
    "ChatStreamingGenerator",
    "ChunkFormatter",
    "CompletionStreamingGenerator",
    "DeltaGenerator",
    "ErrorSeverity",
    "JSONLinesFormatter",
    "OpenAIChatFormatter",
    "OpenAICompletionFormatter",
    "PlainTextFormatter",
    "ProgressTracker",
    "RealtimeStreamingGenerator",
    "SSEFormatter",
    "StreamCancelledException",
    "StreamChunk",
    "StreamContext",
    "StreamError",
    "StreamException",
    "StreamGenerationException",
    "StreamManager",
    "StreamMetrics",
    "StreamStatus",
    "StreamTimeoutException",
    "StreamType",
    "StreamingGenerator",
    "TokenChunker",
]
