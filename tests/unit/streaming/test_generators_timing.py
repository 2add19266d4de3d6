"""Generators emit chunks on absolute deadlines from the plan, and never sleep when untimed.

The schedule is checked exactly, whatever the load on the machine: a :class:`Timeline` records
every deadline a generator hands the loop's shared ticker (``fakeai.timing.Ticker.wait``, where
``Pacer`` waits) and every chunk its consumer gets, in order. A chunk is due at the deadline of
the wait before it; the wall clock checks only that no chunk is early, since a loaded machine can
make any chunk late by any amount (issue 16). How late the ticker wakes is its own concern.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from fakeai.streaming.base import StreamChunk, StreamContext, StreamingGenerator, StreamType
from fakeai.streaming.generators import ChatStreamingGenerator, CompletionStreamingGenerator
from fakeai.timing import Ticker, TimingPlan

EARLY = 0.005
"""Allowed earliness: the loop may wake a timer up to its clock resolution early."""


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


class Timeline:
    """What a generator did, in order: each deadline it handed the loop's ticker and each chunk
    its consumer got, with the loop time it got it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[float, StreamChunk | None]] = []
        """(deadline, None) for a wait, (loop time, chunk) for a chunk."""
        wait = Ticker.wait

        def recording(ticker: Ticker, deadline: float) -> Awaitable[None]:
            self.events.append((deadline, None))
            return wait(ticker, deadline)

        monkeypatch.setattr(Ticker, "wait", recording)

    async def run(
        self,
        gen: StreamingGenerator,
        context: StreamContext,
        response: Any,
        consume: Callable[[StreamChunk], Awaitable[None]] | None = None,
    ) -> list[tuple[float, StreamChunk]]:
        """The chunks of ``gen`` with the loop time each reached the consumer; ``consume`` is
        awaited after each (a slow consumer)."""
        loop = asyncio.get_running_loop()
        out: list[tuple[float, StreamChunk]] = []
        async for chunk in gen.generate(context, response):
            out.append((loop.time(), chunk))
            self.events.append(out[-1])
            if consume is not None:
                await consume(chunk)
        return out

    @property
    def deadlines(self) -> list[float]:
        """Every deadline waited for, in order."""
        return [at for at, chunk in self.events if chunk is None]

    def token_deadlines(self) -> list[float | None]:
        """For each chunk with tokens, the deadline of the last wait before it (None: none)."""
        last: float | None = None
        out: list[float | None] = []
        for at, chunk in self.events:
            if chunk is None:
                last = at
            elif chunk.token_count:
                out.append(last)
        return out


def assert_paced(
    timeline: Timeline, out: list[tuple[float, StreamChunk]], due: list[float]
) -> None:
    """The token chunks went out at deadlines ``due`` (one per token chunk, in order): each
    right after the wait for its own deadline, not after a later one, and none early."""
    assert timeline.token_deadlines() == pytest.approx(due, abs=1e-9)
    times = [t for t, c in out if c.token_count]
    assert len(times) == len(due)
    for t, at in zip(times, due, strict=True):
        assert t >= at - EARLY


async def test_chunks_are_emitted_at_plan_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    latency = FixedLatency(0.12, 0.03)
    timeline = Timeline(monkeypatch)
    loop = asyncio.get_running_loop()
    origin = loop.time()
    context = ctx(start_time=origin, prompt_tokens=11, cached_tokens=4, seed=9, include_usage=True)
    out = await timeline.run(
        ChatStreamingGenerator(latency), context, chat_response("a b c d e", "x y")
    )
    plan = TimingPlan.fixed(0.12, 0.03, 5)
    # One wait per step, on the plan's absolute deadlines (chained sleeps would drift).
    assert timeline.deadlines == pytest.approx(
        [origin + plan.offset(k) for k in range(5)], abs=1e-9
    )
    steps = [0, 0, 1, 1, 2, 3, 4]  # choice 0 has 5 tokens, choice 1 has 2; interleaved
    assert_paced(timeline, out, [origin + plan.offset(k) for k in steps])
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


async def test_deadlines_are_absolute_so_a_slow_consumer_causes_no_drift(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    timeline = Timeline(monkeypatch)
    loop = asyncio.get_running_loop()
    origin = loop.time()
    gen = CompletionStreamingGenerator(FixedLatency(0.05, 0.02))
    response = {"id": "cmpl-t", "model": "m", "choices": [{"index": 0, "text": " a" * 10}]}

    async def slow_once(chunk: StreamChunk) -> None:
        if chunk.sequence_number == 0:
            await asyncio.sleep(0.1)  # a slow consumer, once

    out = await timeline.run(gen, ctx(start_time=origin), response, slow_once)
    plan = TimingPlan.fixed(0.05, 0.02, 10)
    # After the 0.1 s pause every deadline is still the plan's, from the same origin: chained
    # sleeps would have asked for "now + 20 ms" and carried the pause to the end.
    due = [origin + plan.offset(k) for k in range(10)]
    assert timeline.deadlines == pytest.approx(due, abs=1e-9)
    assert_paced(timeline, out, due)


async def test_overrides_without_latency_manager_use_a_fixed_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    timeline = Timeline(monkeypatch)
    loop = asyncio.get_running_loop()
    origin = loop.time()
    out = await timeline.run(
        ChatStreamingGenerator(),
        ctx(start_time=origin, ttft_ms=60, itl_ms=20),
        chat_response("a b c"),
    )
    assert_paced(timeline, out, [origin + due for due in (0.06, 0.08, 0.10)])


async def test_chunk_delay_paces_steps_when_simulation_is_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    timeline = Timeline(monkeypatch)
    loop = asyncio.get_running_loop()
    origin = loop.time()
    context = ctx(start_time=origin, chunk_delay_seconds=0.03, enable_latency_simulation=False)
    out = await timeline.run(
        ChatStreamingGenerator(FixedLatency(5.0, 5.0)), context, chat_response("a b c")
    )
    assert_paced(timeline, out, [origin + due for due in (0.0, 0.03, 0.06)])


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
