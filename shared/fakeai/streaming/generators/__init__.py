"""Generators that turn a full (non-streaming) response into timed OpenAI stream chunks.

``ChatStreamingGenerator`` (``chat.completion.chunk``), ``CompletionStreamingGenerator``
(``text_completion``), ``AudioStreamingGenerator`` (chat audio deltas) and
``RealtimeStreamingGenerator`` (GA Realtime server events). Each takes an optional latency
model (:class:`fakeai.timing.LatencyModel`) and emits chunks on absolute deadlines.
"""

from fakeai.streaming.generators.audio import AudioStreamingGenerator
from fakeai.streaming.generators.chat import ChatStreamingGenerator
from fakeai.streaming.generators.completion import CompletionStreamingGenerator
from fakeai.streaming.generators.realtime import RealtimeStreamingGenerator

__all__ = [
    "AudioStreamingGenerator",
    "ChatStreamingGenerator",
    "CompletionStreamingGenerator",
    "RealtimeStreamingGenerator",
]
