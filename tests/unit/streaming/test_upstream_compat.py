"""Code written for FakeAI 0.3's ``fakeai.streaming`` runs unchanged against this library.

Written the way upstream's own tests are: plain mock response classes read by attribute, the
upstream names and module paths, upstream's call shapes. The deliberate differences (OpenAI's
wire format kept where upstream broke it; plain methods instead of coroutines on the manager)
are in ``docs/library.md``; the tests here pin the shape this library gives instead.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion

from fakeai.kv_cache import tokenize_for_cache
from fakeai.streaming import StreamManager, StreamType
from fakeai.streaming.base import (
    ErrorSeverity,
    StreamCancelledException,
    StreamChunk,
    StreamContext,
    StreamError,
    StreamGenerationException,
    StreamMetrics,
    StreamStatus,
    StreamTimeoutException,
)
from fakeai.streaming.chunking import (
    AdaptiveChunker,
    DeltaGenerator,
    ProgressTracker,
    TokenChunker,
    TokenTiming,
)
from fakeai.streaming.generators.audio_stream import AudioStreamingGenerator
from fakeai.streaming.generators.chat_stream import ChatStreamingGenerator
from fakeai.streaming.generators.completion_stream import CompletionStreamingGenerator
from fakeai.streaming.generators.realtime_stream import RealtimeStreamingGenerator
from fakeai.streaming.sse import OpenAIChatFormatter, OpenAICompletionFormatter, SSEFormatter
from fakeai.streaming_metrics import StreamingMetricsTracker


class MockMessage:
    def __init__(self, content: str | None) -> None:
        self.role = "assistant"
        self.content = content


class MockChoice:
    def __init__(self, content: str | None) -> None:
        self.message = MockMessage(content)
        self.finish_reason = "stop"


class MockUsage:
    def __init__(self) -> None:
        self.prompt_tokens = 10
        self.completion_tokens = 20
        self.total_tokens = 30


class MockChatResponse:
    def __init__(self, content: str | None = "Hello, world!") -> None:
        self.id = "chatcmpl-test123"
        self.created = 1234567890
        self.model = "gpt-4o"
        self.choices = [MockChoice(content)]
        self.usage = MockUsage()


class MockCompletionChoice:
    text = "Once upon a time"
    finish_reason = "length"
    index = 0


class MockCompletionResponse:
    def __init__(self) -> None:
        self.id = "cmpl-test123"
        self.model = "gpt-4o"
        self.choices = [MockCompletionChoice()]


def plain_manager(**kwargs: Any) -> StreamManager:
    return StreamManager(enable_metrics=False, enable_latency_simulation=False, **kwargs)


async def drain(manager: StreamManager, response: Any, **kwargs: Any) -> list[StreamChunk]:
    kwargs.setdefault("stream_type", StreamType.CHAT)
    return [c async for c in manager.create_stream(full_response=response, **kwargs)]


def content_of(chunks: list[StreamChunk]) -> str:
    return "".join(
        c.data["choices"][0]["delta"].get("content") or "" for c in chunks if c.data["choices"]
    )


# -- full_response of any shape -------------------------------------------------------------


async def test_plain_object_chat_response_streams_its_content() -> None:
    chunks = await drain(plain_manager(), MockChatResponse("Hi there, friend!"))
    assert content_of(chunks) == "Hi there, friend!"
    assert chunks[0].is_first
    assert chunks[-1].is_last
    assert all(c.data["id"] == "chatcmpl-test123" for c in chunks)
    last = chunks[-1].data["choices"][0]
    assert last["finish_reason"] == "stop"
    assert last["delta"] == {}


async def test_plain_object_completion_response_streams_its_text() -> None:
    chunks = await drain(
        plain_manager(), MockCompletionResponse(), stream_type=StreamType.COMPLETION
    )
    assert "".join(c.data["choices"][0]["text"] for c in chunks) == "Once upon a time"
    assert chunks[-1].data["choices"][0]["finish_reason"] == "length"
    assert chunks[0].data["object"] == "text_completion"


async def test_openai_sdk_response_types_stream() -> None:
    chat = ChatCompletion.model_validate(
        {
            "id": "chatcmpl-sdk",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "From the SDK."},
                    "finish_reason": "stop",
                }
            ],
        }
    )
    completion = Completion.model_validate(
        {
            "id": "cmpl-sdk",
            "object": "text_completion",
            "created": 1,
            "model": "gpt-4o",
            "choices": [{"index": 0, "text": "SDK text", "finish_reason": "stop"}],
        }
    )
    manager = plain_manager()
    assert content_of(await drain(manager, chat)) == "From the SDK."
    chunks = await drain(manager, completion, stream_type=StreamType.COMPLETION)
    assert "".join(c.data["choices"][0]["text"] for c in chunks) == "SDK text"


@pytest.mark.parametrize(
    ("response", "field"),
    [
        (MockUsage(), "full_response.choices"),
        ({"id": "x"}, "full_response.choices"),
        (type("R", (), {"choices": [type("C", (), {"finish_reason": "stop"})()]})(), "message"),
        ({"choices": [{"index": 0}]}, "full_response.choices[0].message"),
    ],
)
async def test_a_missing_field_is_named(response: Any, field: str) -> None:
    with pytest.raises(StreamGenerationException, match=field.replace("[", r"\[")) as info:
        await drain(plain_manager(), response)
    assert "required but missing" in info.value.error.message


async def test_completion_choice_without_text_is_named() -> None:
    class NoText:
        finish_reason = "stop"

    response = type("R", (), {"choices": [NoText()]})()
    with pytest.raises(StreamGenerationException, match=r"full_response\.choices\[0\]\.text"):
        await drain(plain_manager(), response, stream_type=StreamType.COMPLETION)


# -- the manager, as upstream's tests drive it ------------------------------------------------


async def test_manager_upstream_flow() -> None:
    manager = plain_manager()
    seen = []
    async for chunk in manager.create_stream(
        stream_type=StreamType.CHAT,
        stream_id="custom-stream-123",
        model="gpt-4o",
        full_response=MockChatResponse("Word " * 20),
        endpoint="/v1/chat/completions",
        chunk_delay_seconds=0.0,
        max_chunks=5,
        request_metadata={"tenant": "t1"},
    ):
        assert "custom-stream-123" in chunk.chunk_id
        seen.append(manager.get_stream_status("custom-stream-123"))
        metrics = manager.get_stream_metrics("custom-stream-123")
        assert metrics is not None
        assert {"stream_id", "total_chunks"} <= set(metrics.to_dict())
    assert len(seen) == 5
    assert set(seen) == {StreamStatus.RUNNING}
    assert StreamStatus.RUNNING is StreamStatus.STREAMING
    context = manager.get_stream_context("custom-stream-123")
    assert context is not None
    assert context.request_metadata == {"tenant": "t1"}
    metrics = manager.get_stream_metrics("custom-stream-123")
    assert metrics is not None
    assert metrics.completion_time is not None


async def test_manager_timeout_and_cancel() -> None:
    manager = plain_manager()
    with pytest.raises(StreamTimeoutException) as timeout:
        await drain(
            manager,
            MockChatResponse("Long response " * 100),
            timeout_seconds=0.001,
            chunk_delay_seconds=0.01,
        )
    assert timeout.value.message == str(timeout.value)
    stream = manager.create_stream(
        stream_type=StreamType.CHAT, stream_id="c", full_response=MockChatResponse("a b c d")
    )
    await stream.__anext__()
    assert manager.cancel_stream("c") is True
    with pytest.raises(StreamCancelledException):
        await stream.__anext__()


async def test_stream_types_without_a_builtin_generator_need_one() -> None:
    manager = plain_manager()
    with pytest.raises(ValueError, match=r"image.*generator="):
        manager.create_stream(stream_type=StreamType.IMAGE, full_response={})

    class OneChunk:
        async def generate(self, context: StreamContext, full_response: Any) -> Any:
            yield StreamChunk(chunk_id="i-0", sequence_number=0, data={"b64": "AA=="})

    chunks = await drain(manager, None, stream_type=StreamType.EMBEDDING, generator=OneChunk())
    assert [c.data for c in chunks] == [{"b64": "AA=="}]


class LegacyLatency:
    """A FakeAI 0.3 style latency manager: seconds from get_ttft/get_itl, a request count."""

    def __init__(self) -> None:
        self.active = 0
        self.started = 0

    def get_ttft(self, model: str, prompt_tokens: int = 0, **_: Any) -> float:
        return 0.001

    def get_itl(self, model: str, temperature: float = 1.0, current_load: int = 0) -> float:
        return 0.0

    def start_request(self) -> None:
        self.active += 1
        self.started += 1

    def end_request(self) -> None:
        self.active -= 1


async def test_a_legacy_latency_manager_times_and_counts_streams() -> None:
    legacy = LegacyLatency()
    manager = StreamManager(latency_manager=legacy, enable_metrics=False)  # type: ignore[arg-type]
    assert content_of(await drain(manager, MockChatResponse("tick tock"))) == "tick tock"
    assert (legacy.started, legacy.active) == (1, 0)


async def test_client_id_reaches_the_streaming_tracker() -> None:
    tracker = StreamingMetricsTracker()
    manager = StreamManager(streaming_metrics_tracker=tracker, enable_latency_simulation=False)
    await drain(manager, MockChatResponse("Hi"), client_id="user-123")
    stats = tracker.get_client_stats("user-123")
    assert stats is not None
    assert stats["total_streams"] == 1
    assert tracker.get_all_clients() == ["user-123"]
    assert tracker.get_completed_stream_count() == 1


# -- generators by their upstream module names ---------------------------------------------------


async def test_generators_by_upstream_module_names() -> None:
    context = StreamContext(
        stream_id="s",
        stream_type=StreamType.CHAT,
        model="gpt-4o",
        endpoint="/v1/chat/completions",
        start_time=time.time(),  # upstream's meaning: a wall-clock time
        ttft_ms=0.0,
        itl_ms=0.0,
    )
    chat = ChatStreamingGenerator(latency_manager=None, default_chunk_size=3, max_chunk_size=10)
    assert chat.chunker.max_chunk_size == 10
    assert isinstance(chat.delta_generator, DeltaGenerator)
    chunks = [c async for c in chat.generate(context, MockChatResponse("Hello world"))]
    assert content_of(chunks) == "Hello world"
    completion = CompletionStreamingGenerator(latency_manager=None)
    texts = [
        c.data["choices"][0]["text"]
        async for c in completion.generate(
            context, {"choices": [{"text": "abc", "finish_reason": "stop"}]}
        )
    ]
    assert "".join(texts) == "abc"
    assert AudioStreamingGenerator(latency_manager=None, chunk_size_bytes=1024).chunk_size_bytes
    assert RealtimeStreamingGenerator(latency_manager=None).latency_manager is None


async def test_wall_clock_start_time_is_placed_on_the_loop_clock() -> None:
    from fakeai.streaming.generators._pacing import loop_origin

    loop = asyncio.get_running_loop()
    before = loop.time()
    a_second_ago = loop_origin(time.time() - 1.0, loop)
    after = loop.time()
    # One second before the loop's clock during the call, give or take the time the call took:
    # a loaded machine widens the bracket, it cannot break it.
    took = after - before
    assert before - 1.0 - took - 1e-3 <= a_second_ago <= after - 1.0 + 1e-3
    soon = loop.time() + 0.5
    assert loop_origin(soon, loop) == soon  # a loop time is kept as it is


# -- chunking --------------------------------------------------------------------------------


def test_token_chunker_chunk_tokens() -> None:
    chunker = TokenChunker(min_chunk_size=3, max_chunk_size=3)
    tokens = chunker.tokenize("Hello, world! How are you?")
    assert tokens == ["Hello", ",", "world", "!", "How", "are", "you", "?"]
    assert chunker.chunk_tokens(tokens) == [tokens[:3], tokens[3:6], tokens[6:]]
    assert chunker.chunk_tokens([]) == []
    varied = TokenChunker(min_chunk_size=1, max_chunk_size=4, seed=7).chunk_tokens(tokens)
    assert [t for group in varied for t in group] == tokens
    assert all(1 <= len(g) <= 4 for g in varied)
    assert TokenChunker.TOKEN_PATTERN.findall("a,b") == ["a", ",", "b"]
    assert TokenTiming(token="a", delay_seconds=0.1).timestamp > 0


def test_delta_generator_keeps_finish_reason_out_of_the_delta() -> None:
    gen = DeltaGenerator()
    assert gen.generate_chat_delta(content="Hi", finish_reason="stop") == {"content": "Hi"}
    assert gen.generate_chat_delta(finish_reason="stop") == {}
    assert DeltaGenerator.chat_choice({}, "stop") == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert gen.generate_completion_delta(text="x", finish_reason="length") == {
        "text": "x",
        "finish_reason": "length",
    }
    assert gen.generate_audio_delta(transcript_delta="Hi")["audio"]["transcript"] == "Hi"
    before = gen.audio_id
    gen.reset()
    assert gen.audio_id != before
    assert gen.audio_id.startswith("audio_")


def test_progress_tracker_upstream_counters() -> None:
    now = [100.0]
    tracker = ProgressTracker(total_tokens=100, clock=lambda: now[0])
    now[0] += 0.5
    tracker.record_chunk(token_count=10)
    tracker.record_chunk(token_count=15)
    assert (tracker.tokens_generated, tracker.chunks_generated) == (25, 2)
    assert tracker.estimated_time_remaining_seconds() == pytest.approx(1.5)  # 75 at 50/s
    report = tracker.to_dict()
    assert report["progress_percentage"] == 25.0
    assert report["tokens_generated"] == 25
    unknown = ProgressTracker()
    unknown.record_chunk(5)
    assert unknown.progress_percentage() == 0.0
    assert not unknown.is_complete()
    assert unknown.estimated_time_remaining_seconds() is None


def test_adaptive_chunker_current_size_and_reset() -> None:
    chunker = AdaptiveChunker(initial_chunk_size=5, target_chunk_delay_ms=50.0)
    chunker.adjust_chunk_size(actual_delay_ms=10.0)
    assert chunker.current_chunk_size == chunker.get_chunk_size() > 5
    chunker.reset()
    assert chunker.current_chunk_size == 5
    chunker.current_chunk_size = 7
    assert chunker.get_chunk_size() == 7
    with pytest.raises(ValueError, match="current_chunk_size"):
        chunker.current_chunk_size = 0


# -- formatters ------------------------------------------------------------------------------


def _payload(event: str) -> Any:
    assert event.startswith("data: ")
    assert event.endswith("\n\n")
    return json.loads(event[len("data: ") : -2])


def test_openai_chat_and_completion_formatters() -> None:
    chat = _payload(
        OpenAIChatFormatter.format_chat_chunk(
            "chatcmpl-1", "gpt-4o", 1, {"content": "Hi"}, finish_reason=None
        )
    )
    assert chat["object"] == "chat.completion.chunk"
    assert chat["choices"] == [
        {"index": 0, "delta": {"content": "Hi"}, "logprobs": None, "finish_reason": None}
    ]
    # An upstream-style delta carrying finish_reason: moved beside the delta.
    end = _payload(
        OpenAIChatFormatter.format_chat_chunk("chatcmpl-1", "gpt-4o", 1, {"finish_reason": "stop"})
    )
    assert end["choices"][0]["delta"] == {}
    assert end["choices"][0]["finish_reason"] == "stop"
    text = _payload(
        OpenAICompletionFormatter.format_completion_chunk("cmpl-1", "gpt-4o", 1, "Hi", "stop")
    )
    assert text["choices"] == [
        {"text": "Hi", "index": 0, "logprobs": None, "finish_reason": "stop"}
    ]
    assert OpenAIChatFormatter.format_done() == "data: [DONE]\n\n"


def test_custom_event() -> None:
    event = SSEFormatter.format_custom_event("ping", {"n": 1})
    assert event == 'event: ping\ndata: {"n":1}\n\n'
    with pytest.raises(ValueError, match="event_type"):
        SSEFormatter.format_custom_event("a\nb", "x")


# -- base types ------------------------------------------------------------------------------


def test_base_types_upstream_fields() -> None:
    context = StreamContext(
        stream_id="s",
        stream_type=StreamType.CHAT,
        model="gpt-4o",
        endpoint="/v1/chat/completions",
        timeout_seconds=None,
        request_metadata={"k": "v"},
        max_chunks=3,
        kv_cache_enabled=False,
    )
    assert context.metadata == {"k": "v"}
    assert context.request_metadata is context.metadata
    assert context.elapsed_time() >= 0
    assert not context.is_timeout()
    chunk = StreamChunk(chunk_id="c", sequence_number=0, data={"x": 1})
    assert chunk.to_dict()["data"] == {"x": 1}
    assert chunk.to_dict()["sequence_number"] == 0
    metrics = StreamMetrics(stream_id="s", start_time=10.0)
    metrics.completion_time = 12.0
    assert metrics.end_time == 12.0
    assert metrics.to_dict()["total_duration_ms"] == 2000.0
    assert metrics.to_dict()["error_count"] == 0
    error = StreamError(
        error_code="e", message="m", severity=ErrorSeverity.WARNING, context={"a": 1}
    )
    assert error.details == {"a": 1}
    assert error.timestamp > 0
    assert error.to_dict() == {"message": "m", "type": "stream_error", "param": None, "code": "e"}
    cancelled = StreamCancelledException("s", message="Client went away")
    assert cancelled.reason == "Client went away"
    assert "Client went away" in cancelled.message
    failed = StreamGenerationException("s", error, message="Stream generation failed")
    assert failed.message.startswith("Stream generation failed")
    assert failed.error is error
    assert StreamStatus.INITIALIZING is StreamStatus.PENDING
    assert not StreamStatus.PAUSED.is_final


def test_kv_cache_tokenize_for_cache() -> None:
    ids = tokenize_for_cache("Hello, world")
    assert ids == tokenize_for_cache("Hello, world")
    assert len(ids) >= 2
    assert tokenize_for_cache("Hello, world and more")[: len(ids)] == ids
