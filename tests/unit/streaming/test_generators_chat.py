"""ChatStreamingGenerator: exact chunk shapes, concatenation, usage, n, tool calls."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pydantic
import pytest

from fakeai.content import build_chat_completion, split_pieces
from fakeai.streaming.base import StreamChunk, StreamContext, StreamType
from fakeai.streaming.generators import ChatStreamingGenerator

SID = "chatcmpl-stream"
MESSAGES = [{"role": "user", "content": "Hi"}]
TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
        },
    },
}


def ctx(**kw: Any) -> StreamContext:
    kw.setdefault("created", 1234)
    return StreamContext(stream_id=SID, stream_type=StreamType.CHAT, model="gpt-4o", **kw)


def full(body: dict[str, Any] | None = None, seed: int = 1) -> dict[str, Any]:
    return build_chat_completion(
        {"model": "gpt-4o", "messages": MESSAGES, **(body or {})},
        completion_id=SID,
        created=1234,
        seed=seed,
    )


def text_response(*texts: str | None, finish: str = "stop") -> dict[str, Any]:
    return {
        "id": SID,
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "system_fingerprint": "fp_x",
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": t},
                "logprobs": None,
                "finish_reason": finish,
            }
            for i, t in enumerate(texts)
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5},
    }


async def collect(
    response: Any, context: StreamContext | None = None, chunk_tokens: int = 1
) -> list[StreamChunk]:
    gen = ChatStreamingGenerator(chunk_tokens=chunk_tokens)
    return [c async for c in gen.generate(context or ctx(), response)]


def content_of(chunks: list[StreamChunk], index: int = 0) -> str:
    return "".join(
        ch["delta"].get("content") or ""
        for c in chunks
        for ch in c.data["choices"]
        if ch["index"] == index
    )


async def test_chunk_shapes_exact() -> None:
    resp = full({"max_tokens": 3})
    chunks = await collect(resp)
    pieces = split_pieces(resp["choices"][0]["message"]["content"])
    header = {
        "id": SID,
        "object": "chat.completion.chunk",
        "created": 1234,
        "model": "gpt-4o",
        "system_fingerprint": resp["system_fingerprint"],
    }
    assert [c.data for c in chunks] == [
        {
            **header,
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": pieces[0]},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
        },
        {
            **header,
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": pieces[1]},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
        },
        {
            **header,
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": pieces[2]},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
        },
        {
            **header,
            "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}],
        },
    ]
    assert [c.chunk_id for c in chunks] == [f"{SID}-{i}" for i in range(4)]
    assert [c.sequence_number for c in chunks] == [0, 1, 2, 3]
    assert [c.token_count for c in chunks] == [1, 1, 1, 0]
    assert [c.is_first for c in chunks] == [True, False, False, False]
    assert [c.is_last for c in chunks] == [False, False, False, True]
    assert {c.chunk_type for c in chunks} == {"chat.completion.chunk"}
    assert chunks[-1].metadata["finish_reason"] == "length"
    assert all("usage" not in c.data for c in chunks)
    json.dumps([c.data for c in chunks])


@pytest.mark.parametrize("chunk_tokens", [1, 2, 5])
async def test_concatenation_equals_content_over_many_seeds(chunk_tokens: int) -> None:
    for seed in range(25):
        resp = full({"n": 2}, seed=seed)
        chunks = await collect(resp, ctx(include_usage=True), chunk_tokens)
        for i in range(2):
            assert content_of(chunks, i) == resp["choices"][i]["message"]["content"]
        usage = chunks[-1].data["usage"]
        assert usage == resp["usage"]
        assert usage["completion_tokens"] == sum(c.token_count for c in chunks)


@pytest.mark.parametrize(
    "text",
    [
        "  leading",
        "trailing  \n",
        "\n\n\n",
        " ",
        "a\tb\r\nc  d",
        "x" * 40,
        "   multiple   spaces   ",
    ],
)
async def test_whitespace_heavy_text_roundtrips(text: str) -> None:
    chunks = await collect(text_response(text), ctx(include_usage=True))
    assert content_of(chunks) == text
    assert chunks[-1].data["usage"]["completion_tokens"] == len(split_pieces(text))
    assert sum(1 for c in chunks if c.token_count) == len(split_pieces(text))


async def test_role_travels_with_first_token_only() -> None:
    chunks = await collect(full({"n": 3}))
    for i in range(3):
        mine = [c.data["choices"][0] for c in chunks if c.data["choices"][0]["index"] == i]
        assert mine[0]["delta"]["role"] == "assistant"
        assert mine[0]["delta"]["content"]  # the first token, not an empty role-only chunk
        assert all("role" not in ch["delta"] for ch in mine[1:])
        assert [ch["finish_reason"] for ch in mine[:-1]] == [None] * (len(mine) - 1)
        assert mine[-1] == {"index": i, "delta": {}, "logprobs": None, "finish_reason": "stop"}


async def test_n_choices_interleave_step_by_step() -> None:
    resp = text_response("a b c", "x", "p q")
    chunks = await collect(resp)
    order = [
        (c.data["choices"][0]["index"], c.data["choices"][0]["delta"].get("content"))
        for c in chunks
    ]
    assert order == [
        (0, "a"), (1, "x"), (1, None), (2, "p"),
        (0, " b"), (2, " q"), (2, None),
        (0, " c"), (0, None),
    ]  # fmt: skip
    assert chunks[-1].is_last
    assert sum(c.is_last for c in chunks) == 1


async def test_usage_chunk_only_when_requested() -> None:
    resp = full()
    without = await collect(resp)
    assert all(c.data["choices"] for c in without)
    with_usage = await collect(resp, ctx(include_usage=True))
    last = with_usage[-1]
    assert last.data["choices"] == []
    assert last.is_last
    assert last.token_count == 0
    assert not with_usage[-2].is_last
    assert sum("usage" in c.data for c in with_usage) == 1


async def test_usage_completion_tokens_follow_streamed_pieces() -> None:
    resp = text_response("one two three")  # usage claims 0 completion tokens
    chunks = await collect(resp, ctx(include_usage=True))
    usage = chunks[-1].data["usage"]
    assert usage["completion_tokens"] == 3
    assert usage["total_tokens"] == 8


@pytest.mark.parametrize("content", ["", None])
async def test_empty_content_still_yields_role_chunk(content: str | None) -> None:
    chunks = await collect(text_response(content), ctx(include_usage=True))
    assert [c.data["choices"][:1] for c in chunks] == [
        [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
        [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
        [],
    ]
    assert chunks[-1].data["usage"]["completion_tokens"] == 0


@pytest.mark.parametrize("chunk_tokens", [1, 3])
async def test_tool_call_deltas_parse_back_to_arguments(chunk_tokens: int) -> None:
    resp = full({"tools": [TOOL]})
    call = resp["choices"][0]["message"]["tool_calls"][0]
    chunks = await collect(resp, ctx(include_usage=True), chunk_tokens)
    deltas = [c.data["choices"][0]["delta"] for c in chunks[:-2]]
    assert deltas[0] == {
        "role": "assistant",
        "tool_calls": [
            {
                "index": 0,
                "id": call["id"],
                "type": "function",
                "function": {"name": "lookup", "arguments": ""},
            }
        ],
    }
    for d in deltas[1:]:
        assert list(d) == ["tool_calls"]
        (frag,) = d["tool_calls"]
        assert list(frag) == ["index", "function"]
        assert frag["index"] == 0
    arguments = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas)
    assert arguments == call["function"]["arguments"]
    json.loads(arguments)
    assert chunks[-2].data["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1].data["usage"]["completion_tokens"] == sum(c.token_count for c in chunks)
    assert chunks[0].token_count == 0  # the header carries no token; the first fragment does


async def test_chunk_tokens_groups_pieces() -> None:
    resp = text_response("a b c d e")
    chunks = await collect(resp, chunk_tokens=2)
    assert [c.data["choices"][0]["delta"].get("content") for c in chunks] == [
        "a b",
        " c d",
        " e",
        None,
    ]
    assert [c.token_count for c in chunks] == [2, 2, 1, 0]
    with pytest.raises(ValueError, match="chunk_tokens"):
        ChatStreamingGenerator(chunk_tokens=0)


class _Message(pydantic.BaseModel):
    role: str
    content: str | None


class _Choice(pydantic.BaseModel):
    index: int
    message: _Message
    finish_reason: str


class _Response(pydantic.BaseModel):
    id: str
    model: str
    choices: list[_Choice]


class _SMessage(msgspec.Struct):
    role: str
    content: str


class _SChoice(msgspec.Struct):
    index: int
    message: _SMessage
    finish_reason: str


class _SResponse(msgspec.Struct):
    id: str
    model: str
    choices: list[_SChoice]


async def test_accepts_pydantic_and_msgspec_responses() -> None:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": "Hi there"},
        "finish_reason": "stop",
    }
    for resp in (
        _Response.model_validate({"id": SID, "model": "m", "choices": [choice]}),
        msgspec.convert({"id": SID, "model": "m", "choices": [choice]}, _SResponse),
    ):
        chunks = await collect(resp)
        assert content_of(chunks) == "Hi there"
        assert chunks[0].data["model"] == "m"


async def test_rejects_unknown_response_types() -> None:
    with pytest.raises(TypeError, match="full_response"):
        await collect(42)
