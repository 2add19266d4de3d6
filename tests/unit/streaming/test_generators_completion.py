"""CompletionStreamingGenerator: legacy ``text_completion`` chunks."""

from __future__ import annotations

from typing import Any

import pytest

from fakeai.content import build_text_completion, split_pieces
from fakeai.streaming.base import StreamChunk, StreamContext, StreamType
from fakeai.streaming.generators import CompletionStreamingGenerator

SID = "cmpl-stream"


def ctx(**kw: Any) -> StreamContext:
    return StreamContext(
        stream_id=SID, stream_type=StreamType.COMPLETION, model="m", created=77, **kw
    )


async def collect(
    response: Any, context: StreamContext | None = None, chunk_tokens: int = 1
) -> list[StreamChunk]:
    gen = CompletionStreamingGenerator(chunk_tokens=chunk_tokens)
    return [c async for c in gen.generate(context or ctx(), response)]


def build(body: dict[str, Any], seed: int = 1) -> dict[str, Any]:
    return build_text_completion({"model": "m", **body}, completion_id=SID, created=77, seed=seed)


async def test_chunk_shapes_exact() -> None:
    resp = build({"prompt": "Say", "max_tokens": 2})
    pieces = split_pieces(resp["choices"][0]["text"])
    chunks = await collect(resp, ctx(include_usage=True))
    header = {"id": SID, "object": "text_completion", "created": 77, "model": "m"}
    assert [c.data for c in chunks] == [
        {
            **header,
            "choices": [{"text": pieces[0], "index": 0, "logprobs": None, "finish_reason": None}],
        },
        {
            **header,
            "choices": [{"text": pieces[1], "index": 0, "logprobs": None, "finish_reason": None}],
        },
        {
            **header,
            "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "length"}],
        },
        {**header, "choices": [], "usage": resp["usage"]},
    ]
    assert [c.token_count for c in chunks] == [1, 1, 0, 0]
    assert [c.is_last for c in chunks] == [False, False, False, True]
    assert {c.chunk_type for c in chunks} == {"text_completion"}


@pytest.mark.parametrize("chunk_tokens", [1, 4])
async def test_concatenation_and_usage_over_many_seeds(chunk_tokens: int) -> None:
    for seed in range(20):
        resp = build({"prompt": ["a", "b"], "n": 2}, seed=seed)
        chunks = await collect(resp, ctx(include_usage=True), chunk_tokens)
        for choice in resp["choices"]:
            text = "".join(
                ch["text"]
                for c in chunks
                for ch in c.data["choices"]
                if ch["index"] == choice["index"]
            )
            assert text == choice["text"]
        assert chunks[-1].data["usage"] == resp["usage"]
        assert resp["usage"]["completion_tokens"] == sum(c.token_count for c in chunks)


async def test_choices_interleave_and_each_finishes() -> None:
    resp = {
        "id": SID,
        "model": "m",
        "choices": [
            {"index": 0, "text": "a b", "finish_reason": "stop"},
            {"index": 1, "text": "", "finish_reason": "length"},
        ],
    }
    chunks = await collect(resp)
    got = [
        (
            c.data["choices"][0]["index"],
            c.data["choices"][0]["text"],
            c.data["choices"][0]["finish_reason"],
        )
        for c in chunks
    ]
    assert got == [
        (0, "a", None),
        (1, "", None),
        (1, "", "length"),
        (0, " b", None),
        (0, "", "stop"),
    ]
    assert chunks[-1].is_last
    assert chunks[0].is_first
