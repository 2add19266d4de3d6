"""Streams of the builders' conventions: logprobs per chunk, reasoning deltas first."""

from __future__ import annotations

from typing import Any

import pytest

from fakeai.content import build_chat_completion, build_text_completion
from fakeai.streaming.base import StreamChunk, StreamContext, StreamType
from fakeai.streaming.generators import ChatStreamingGenerator, CompletionStreamingGenerator

MESSAGES = [{"role": "user", "content": "Hi"}]


def chat_full(model: str, **body: Any) -> dict[str, Any]:
    return build_chat_completion(
        {"model": model, "messages": MESSAGES, **body}, completion_id="s", created=1, seed=3
    )


async def chat_chunks(full: dict[str, Any], chunk_tokens: int = 1) -> list[StreamChunk]:
    context = StreamContext(
        stream_id="s", stream_type=StreamType.CHAT, model="m", created=1, include_usage=True
    )
    gen = ChatStreamingGenerator(chunk_tokens=chunk_tokens)
    return [c async for c in gen.generate(context, full)]


def choices(chunks: list[StreamChunk]) -> list[dict[str, Any]]:
    return [ch for c in chunks for ch in c.data["choices"]]


@pytest.mark.parametrize("chunk_tokens", [1, 3])
async def test_chat_stream_carries_each_pieces_logprobs(chunk_tokens: int) -> None:
    full = chat_full("gpt-4o", logprobs=True, top_logprobs=2, max_tokens=10, n=2)
    chunks = await chat_chunks(full, chunk_tokens)
    for index in (0, 1):
        mine = [ch for ch in choices(chunks) if ch["index"] == index]
        content = [ch for ch in mine if ch["delta"].get("content")]
        assert all("logprobs" not in ch["delta"] for ch in mine)
        streamed = [e for ch in content for e in ch["logprobs"]["content"]]
        assert streamed == full["choices"][index]["logprobs"]["content"]
        for ch in content:
            assert "".join(e["token"] for e in ch["logprobs"]["content"]) == ch["delta"]["content"]
            assert ch["logprobs"]["refusal"] is None
        assert mine[-1]["finish_reason"] == "length"
        assert mine[-1]["logprobs"] is None


async def test_chat_stream_without_logprobs_keeps_null() -> None:
    chunks = await chat_chunks(chat_full("gpt-4o", max_tokens=5))
    assert all(ch["logprobs"] is None for ch in choices(chunks))


@pytest.mark.parametrize("chunk_tokens", [1, 4])
async def test_reasoning_streams_first_and_counts_in_usage(chunk_tokens: int) -> None:
    full = chat_full("deepseek-r1", max_tokens=30, logprobs=True)
    message = full["choices"][0]["message"]
    chunks = await chat_chunks(full, chunk_tokens)
    deltas = [ch["delta"] for ch in choices(chunks)]
    assert deltas[0]["role"] == "assistant"
    assert "reasoning_content" in deltas[0]
    kinds = ["reasoning" if "reasoning_content" in d else "content" for d in deltas if len(d) > 0]
    assert kinds == sorted(kinds, key=lambda k: k == "content")  # all reasoning, then content
    assert "".join(d.get("reasoning_content", "") for d in deltas) == message["reasoning_content"]
    assert "".join(d.get("content") or "" for d in deltas) == message["content"]
    reasoning_chunks = [ch for ch in choices(chunks) if "reasoning_content" in ch["delta"]]
    assert all(ch["logprobs"] is None for ch in reasoning_chunks)
    usage = chunks[-1].data["usage"]
    assert usage["completion_tokens"] == 30
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 15
    assert sum(c.token_count for c in chunks) == 30


async def test_reasoning_that_spends_the_cap_ends_with_length() -> None:
    full = chat_full("o1", max_tokens=1)
    chunks = await chat_chunks(full)
    found = choices(chunks)
    assert found[0]["delta"]["role"] == "assistant"
    assert found[0]["delta"]["reasoning_content"]
    assert found[-1]["finish_reason"] == "length"


@pytest.mark.parametrize("chunk_tokens", [1, 2])
async def test_completion_stream_carries_legacy_logprobs(chunk_tokens: int) -> None:
    full = build_text_completion(
        {"model": "gpt-4o", "prompt": "Say", "logprobs": 3, "echo": True, "max_tokens": 6},
        completion_id="s",
        created=1,
        seed=3,
    )
    context = StreamContext(stream_id="s", stream_type=StreamType.COMPLETION, model="m", created=1)
    gen = CompletionStreamingGenerator(chunk_tokens=chunk_tokens)
    found = [ch for c in [c async for c in gen.generate(context, full)] for ch in c.data["choices"]]
    expected = full["choices"][0]["logprobs"]
    pieces = [ch for ch in found if ch["text"]]
    for column in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
        assert [v for ch in pieces for v in ch["logprobs"][column]] == expected[column]
    assert all("".join(ch["logprobs"]["tokens"]) == ch["text"] for ch in pieces)
    assert found[-1]["logprobs"] is None
    assert found[-1]["finish_reason"] == "length"
