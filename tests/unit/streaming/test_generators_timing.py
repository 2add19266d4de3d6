"""Generators emit chunks on absolute deadlines from the plan, and never sleep when untimed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fakeai.streaming.base import StreamContext, StreamingGenerator, StreamType
from fakeai.streaming.generators import ChatStreamingGenerator, CompletionStreamingGenerator
from fakeai.timing import TimingPlan

EARLY = 0.005
"""Allowed earliness: the loop may wake a timer up to its clock resolution early."""
LATE = 0.15
"""Generous lateness bound, so a busy machine does not fail the behaviour check."""


class FixedLatency:
    """A LatencyModel returning one fixed plan and recording how it was asked."""

    def __init__(self, ttft_s: float, itl_s: float) -> None:
        self.ttft_s, self.itl_s = ttft_s, itl_s
        self.calls: list[dict[str, Any]] = []

    def plan(self, model: str, **kw: Any) -> TimingPlan:
        self.calls.append({"model": model, **kw})
        return TimingPlan.fixed(self.ttft_s, self.itl_s, kw["output_tokens"])

    def stream_started(self, model: str) -> None:
        pass

    def stream_finished(self, model: str) -> None:
        pass


def chat_response(*texts: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-t",
        "model": "m",
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
            for i, t in enumerate(texts)
        ],
    }


def ctx(**kw: Any) -> StreamContext:
    return StreamContext(stream_id="chatcmpl-t", stream_type=StreamType.CHAT, model="m", **kw)


async def timed(
    gen: StreamingGenerator, context: StreamContext, response: Any
) -> list[tuple[float, Any]]:
    loop = asyncio.get_running_loop()
    return [(loop.time(), c) async for c in gen.generate(context, response)]


async def test_chunks_are_emitted_at_plan_deadlines() -> None:
    latency = FixedLatency(0.12, 0.03)
    loop = asyncio.get_running_loop()
    origin = loop.time()
    context = ctx(start_time=origin, prompt_tokens=11, cached_tokens=4, seed=9, include_usage=True)
    out = await timed(ChatStreamingGenerator(latency), context, chat_response("a b c d e", "x y"))
    plan = TimingPlan.fixed(0.12, 0.03, 5)
    token_chunks = [(t, c) for t, c in out if c.token_count]
    steps = [0, 0, 1, 1, 2, 3, 4]  # choice 0 has 5 tokens, choice 1 has 2; interleaved
    assert len(token_chunks) == len(steps)
    for (t, _), k in zip(token_chunks, steps, strict=True):
        due = origin + plan.offset(k)
        assert due - EARLY <= t <= due + LATE
    # The role arrives with the first token, at TTFT, never before it.
    assert out[0][1].data["choices"][0]["delta"]["role"] == "assistant"
    assert out[0][0] >= origin + 0.12 - EARLY
    assert latency.calls == [
        {
            "model": "m",
            "output_tokens": 5,
            "prompt_tokens": 11,
            "cached_tokens": 4,
            "seed": 9,
            "ttft_ms": None,
            "itl_ms": None,
        }
    ]


async def test_origin_defaults_to_first_anext() -> None:
    loop = asyncio.get_running_loop()
    gen = ChatStreamingGenerator(FixedLatency(0.08, 0.0)).generate(ctx(), chat_response("hi"))
    before = loop.time()
    first = await anext(gen)
    assert loop.time() - before >= 0.08 - EARLY
    assert first.is_first
    rest = [c async for c in gen]
    assert rest[-1].is_last


async def test_deadlines_are_absolute_so_a_slow_consumer_causes_no_drift() -> None:
    loop = asyncio.get_running_loop()
    origin = loop.time()
    gen = CompletionStreamingGenerator(FixedLatency(0.05, 0.02))
    response = {"id": "cmpl-t", "model": "m", "choices": [{"index": 0, "text": " a" * 10}]}
    last = 0.0
    async for chunk in gen.generate(ctx(start_time=origin), response):
        if chunk.sequence_number == 0:
            await asyncio.sleep(0.1)  # a slow consumer, once
        last = loop.time()
    total = TimingPlan.fixed(0.05, 0.02, 10).total_s
    assert last - origin < total + 0.1 - 0.02  # chained sleeps would add the full 0.1 s


async def test_overrides_without_latency_manager_use_a_fixed_plan() -> None:
    loop = asyncio.get_running_loop()
    origin = loop.time()
    out = await timed(
        ChatStreamingGenerator(),
        ctx(start_time=origin, ttft_ms=60, itl_ms=20),
        chat_response("a b c"),
    )
    times = [t - origin for t, c in out if c.token_count]
    for t, due in zip(times, [0.06, 0.08, 0.10], strict=True):
        assert due - EARLY <= t <= due + LATE


async def test_chunk_delay_paces_steps_when_simulation_is_off() -> None:
    loop = asyncio.get_running_loop()
    origin = loop.time()
    context = ctx(start_time=origin, chunk_delay_seconds=0.03, enable_latency_simulation=False)
    out = await timed(
        ChatStreamingGenerator(FixedLatency(5.0, 5.0)), context, chat_response("a b c")
    )
    times = [t - origin for t, c in out if c.token_count]
    for t, due in zip(times, [0.0, 0.03, 0.06], strict=True):
        assert due - EARLY <= t <= due + LATE


@pytest.mark.parametrize(
    ("latency", "kw"),
    [
        (FixedLatency(1.0, 1.0), {"enable_latency_simulation": False}),
        (None, {}),
        (None, {"ttft_ms": 0, "itl_ms": 0}),
        (FixedLatency(0.0, 0.0), {"ttft_ms": 0, "itl_ms": 0}),
    ],
)
async def test_no_sleep_at_all_when_untimed(
    monkeypatch: pytest.MonkeyPatch, latency: FixedLatency | None, kw: dict[str, Any]
) -> None:
    async def no_sleep(*_: Any, **__: Any) -> None:
        raise AssertionError("asyncio.sleep called on the untimed path")

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    response = chat_response("one two three four", "five six")
    chunks = [
        c
        async for c in ChatStreamingGenerator(latency).generate(
            ctx(include_usage=True, **kw), response
        )
    ]
    assert sum(c.token_count for c in chunks) == 6
    completion = {"id": "c", "model": "m", "choices": [{"index": 0, "text": "a b"}]}
    chunks = [
        c async for c in CompletionStreamingGenerator(latency).generate(ctx(**kw), completion)
    ]
    assert sum(c.token_count for c in chunks) == 2
