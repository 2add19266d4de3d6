"""The official ``openai`` SDK against the whole pipeline (producer + edge, real Redis)."""

from __future__ import annotations

import openai
import pytest
from tests.support.stack import Stack

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

MODEL = "gpt-4o"
MESSAGES = [{"role": "user", "content": "Tell me about durable streams."}]


def _client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key="x", max_retries=0, timeout=20)


def test_streaming_chat_with_usage(stack: Stack) -> None:
    with _client(stack) as client:
        chunks = list(
            client.chat.completions.create(
                model=MODEL,
                messages=MESSAGES,  # type: ignore[arg-type]
                stream=True,
                max_tokens=12,
                stream_options={"include_usage": True},
            )
        )
    assert len({c.id for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    content = [c for c in chunks if c.choices]
    assert content[0].choices[0].delta.role == "assistant"
    assert content[-1].choices[0].finish_reason == "length"
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert usage is not None
    assert usage.completion_tokens == 12
    text = "".join(c.choices[0].delta.content or "" for c in content)
    assert text


def test_streaming_chat_n_choices(stack: Stack) -> None:
    with _client(stack) as client:
        chunks = list(
            client.chat.completions.create(
                model=MODEL,
                messages=MESSAGES,  # type: ignore[arg-type]
                stream=True,
                n=3,
                max_tokens=5,
            )
        )
    finishes = {ch.index: ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason}
    assert finishes == {0: "length", 1: "length", 2: "length"}


def test_non_streaming_chat_and_seed_reproducibility(stack: Stack) -> None:
    with _client(stack) as client:
        a = client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=10,
            seed=42,
        )
        b = client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=10,
            seed=42,
        )
    assert a.object == "chat.completion"
    assert a.id != b.id
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.choices[0].finish_reason == "length"
    assert a.usage is not None
    assert a.usage.completion_tokens == 10


def test_stop_sequence_ends_with_stop(stack: Stack) -> None:
    with _client(stack) as client:
        free = client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=30,
            seed=3,
        )
        text = free.choices[0].message.content or ""
        words = text.split()
        assert len(words) > 4
        stop = words[3]
        stopped = client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=30,
            seed=3,
            stop=[stop],
        )
    assert stopped.choices[0].finish_reason == "stop"
    assert stop not in (stopped.choices[0].message.content or "")


def test_tools_stream_tool_calls(stack: Stack) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    with _client(stack) as client:
        chunks = list(
            client.chat.completions.create(
                model=MODEL,
                messages=MESSAGES,  # type: ignore[arg-type]
                tools=tools,  # type: ignore[arg-type]
                tool_choice="required",
                stream=True,
            )
        )
    calls = [tc for c in chunks for ch in c.choices for tc in (ch.delta.tool_calls or [])]
    assert calls
    assert calls[0].function is not None
    assert calls[0].function.name == "get_weather"
    finishes = [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]
    assert finishes == ["tool_calls"]


def test_completions_streaming_and_not(stack: Stack) -> None:
    with _client(stack) as client:
        chunks = list(
            client.completions.create(
                model=MODEL,
                prompt="Once upon a time",
                max_tokens=6,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        whole = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=6)
    assert all(c.object == "text_completion" for c in chunks)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6
    assert "".join(ch.text for c in chunks for ch in c.choices)
    assert whole.choices[0].finish_reason == "length"
    assert whole.id.startswith("cmpl-")


def test_unknown_model_raises_not_found(stack: Stack) -> None:
    with _client(stack) as client, pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope-9000", messages=MESSAGES)  # type: ignore[arg-type]
    assert info.value.code == "model_not_found"


async def test_async_client_streams(stack: Stack) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"{stack.url}/v1", api_key="x", max_retries=0, timeout=20
    ) as client:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
            max_tokens=8,
        )
        texts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(texts)
