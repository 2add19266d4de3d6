"""StreamManager calls its collaborators (metrics, streaming metrics, latency, KV cache)."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fakeai.content import build_chat_completion
from fakeai.hooks import CacheMetricsHook, CacheRouterHook, MetricsHook, StreamingMetricsHook
from fakeai.kv_cache import KVCacheMetrics, SmartRouter
from fakeai.latency_profiles import LatencyProfileManager
from fakeai.metrics import MetricsTracker
from fakeai.streaming import (
    StreamChunk,
    StreamContext,
    StreamGenerationException,
    StreamingGenerator,
    StreamManager,
    StreamStatus,
    StreamType,
)
from fakeai.streaming_metrics import StreamingMetricsTracker


class Recorder:
    """Implements both hook protocols and records every call as ``(method, args...)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, *args, *sorted(kwargs.items())))

        return record

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


def response(tokens: int = 3) -> dict[str, Any]:
    return build_chat_completion(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": tokens},
        completion_id="chatcmpl-h",
        created=1,
        seed=5,
    )


class Failing(StreamingGenerator):
    async def generate(
        self, context: StreamContext, full_response: Any
    ) -> AsyncIterator[StreamChunk]:
        yield StreamChunk(chunk_id="c", sequence_number=0, data={"content": "x"}, token_count=1)
        raise ValueError("bad")


async def test_completed_stream_calls_hooks_in_order() -> None:
    metrics, streaming = Recorder(), Recorder()
    manager = StreamManager(metrics_tracker=metrics, streaming_metrics_tracker=streaming)
    chunks = [
        c
        async for c in manager.create_stream(
            StreamType.CHAT,
            "gpt-4o",
            response(3),
            stream_id="h1",
            prompt_tokens=7,
            temperature=0.5,
            max_tokens=3,
        )
    ]
    ep = "/v1/chat/completions"
    assert metrics.names() == [
        "track_request",
        "start_stream",
        "track_stream_first_token",
        "track_stream_token",
        "track_stream_token",
        "track_stream_token",
        "track_tokens",
        "complete_stream",
        "track_response",
    ]
    assert metrics.calls[0] == ("track_request", ep)
    assert metrics.calls[1] == ("start_stream", "h1", ep)
    assert metrics.calls[-3] == ("track_tokens", ep, 3)
    assert metrics.calls[-2] == ("complete_stream", "h1", ep)
    assert streaming.calls[0] == (
        "start_stream",
        "h1",
        "gpt-4o",
        ("max_tokens", 3),
        ("prompt_tokens", 7),
        ("temperature", 0.5),
    )
    tokens = [c[2] for c in streaming.calls if c[0] == "record_token"]
    assert "".join(tokens) == response(3)["choices"][0]["message"]["content"]
    assert streaming.calls[-1] == ("complete_stream", "h1", "length", ("client_cancelled", False))
    assert len(chunks) == 4


async def test_failure_and_client_cancel_hooks() -> None:
    metrics, streaming = Recorder(), Recorder()
    manager = StreamManager(metrics_tracker=metrics, streaming_metrics_tracker=streaming)
    with pytest.raises(StreamGenerationException):
        async for _ in manager.create_stream(StreamType.CHAT, generator=Failing(), stream_id="f"):
            pass
    assert metrics.calls[-1] == ("fail_stream", "f", "/v1/chat/completions", "bad")
    assert streaming.calls[-1] == ("fail_stream", "f", "bad")

    stream = manager.create_stream(StreamType.CHAT, "gpt-4o", response(5), stream_id="c")
    async with contextlib.aclosing(stream):
        await anext(stream)
    assert manager.get_stream_status("c") is StreamStatus.CANCELLED
    assert streaming.calls[-1:] == [("complete_stream", "c", None, ("client_cancelled", True))]


async def test_disabled_metrics_calls_nothing() -> None:
    metrics = Recorder()
    manager = StreamManager(metrics_tracker=metrics, enable_metrics=False)
    async for _ in manager.create_stream(StreamType.CHAT, "gpt-4o", response()):
        pass
    assert metrics.calls == []


def _methods(protocol: type) -> dict[str, inspect.Signature]:
    """The methods a hook Protocol declares, with their signatures (``self`` left out)."""
    out = {}
    for name, member in vars(protocol).items():
        if callable(member) and not name.startswith("_"):
            sig = inspect.signature(member)
            out[name] = sig.replace(parameters=list(sig.parameters.values())[1:])
    return out


@pytest.mark.parametrize(
    ("protocol", "implementation"),
    [
        (MetricsHook, MetricsTracker),
        (StreamingMetricsHook, StreamingMetricsTracker),
        (CacheRouterHook, SmartRouter),
        (CacheMetricsHook, KVCacheMetrics),
    ],
)
def test_real_collaborators_implement_their_hook_protocols(
    protocol: type, implementation: type
) -> None:
    """The recorder stands in for the real trackers in the tests above: each real one has
    every method its Protocol declares and accepts every call the Protocol allows (the
    manager's calls): the same parameters in the same order and kinds, a default wherever the
    Protocol has one, and any extra parameter optional."""
    declared = _methods(protocol)
    assert declared, protocol
    empty = inspect.Parameter.empty
    for name, sig in declared.items():
        impl = getattr(implementation, name, None)
        assert callable(impl), f"{implementation.__name__} has no {name}"
        params = list(inspect.signature(impl).parameters.values())[1:]
        wanted = list(sig.parameters.values())
        assert len(params) >= len(wanted), name
        for want, got in zip(wanted, params, strict=False):
            assert (got.name, got.kind) == (want.name, want.kind), name
            assert want.default is empty or got.default is not empty, (name, got.name)
        for extra in params[len(wanted) :]:
            assert extra.default is not empty, (name, extra.name)


async def test_real_trackers_and_latency_manager() -> None:
    metrics = MetricsTracker()
    streaming = StreamingMetricsTracker()
    latency = LatencyProfileManager()
    manager = StreamManager(
        metrics_tracker=metrics, streaming_metrics_tracker=streaming, latency_manager=latency
    )
    stream = manager.create_stream(
        StreamType.CHAT, "gpt-4o", response(4), stream_id="r", ttft_ms=0.0, itl_ms=0.0
    )
    first = await anext(stream)
    assert first.is_first
    assert latency.active_streams("gpt-4o") == 1
    rest = [c async for c in stream]
    assert rest[-1].is_last
    assert latency.active_streams("gpt-4o") == 0
    stats = metrics.get_streaming_stats()
    assert stats["completed_streams"] == 1
    assert stats["active_streams"] == 0
    detail = streaming.get_stream_stats("r")
    assert detail is not None
    assert detail["token_count"] == 4
    assert detail["finish_reason"] == "length"


async def test_latency_simulation_off_skips_latency_manager() -> None:
    latency = LatencyProfileManager()
    manager = StreamManager(latency_manager=latency, enable_latency_simulation=False)
    stream = manager.create_stream(StreamType.CHAT, "gpt-4o", response(50))
    await anext(stream)
    assert latency.active_streams() == 0
    rest = [c async for c in stream]
    assert rest[-1].is_last
    # The default generator was built without the latency model: no simulated timing.
    gen = manager._default_generator(StreamType.CHAT, False)
    assert getattr(gen, "latency_manager", "missing") is None


async def test_kv_cache_routing() -> None:
    router, kv_metrics = SmartRouter(num_workers=2, block_size=4), KVCacheMetrics()
    manager = StreamManager(kv_cache_router=router, kv_cache_metrics=kv_metrics)
    tokens = list(range(32))
    for sid in ("k1", "k2"):
        async for _ in manager.create_stream(
            StreamType.CHAT,
            "gpt-4o",
            response(),
            stream_id=sid,
            metadata={"prompt_token_ids": tokens},
        ):
            pass
    second = manager.get_stream_context("k2")
    assert second is not None
    assert second.cached_tokens > 0  # the prefix was cached by k1
    assert kv_metrics.get_cache_hit_rate() > 0
