"""Logprobs, reasoning_content and echo models through the whole pipeline, read by the official
``openai`` SDK (single Redis and cluster)."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from tests.support.stack import Stack

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

MESSAGES: Any = [{"role": "user", "content": "Tell me about durable streams."}]


def _client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key="x", max_retries=0, timeout=20)


def test_chat_logprobs_streamed_and_whole_agree(stack: Stack) -> None:
    args: Any = {"model": "gpt-4o", "messages": MESSAGES, "max_tokens": 12, "seed": 5}
    with _client(stack) as client:
        whole = client.chat.completions.create(**args, logprobs=True, top_logprobs=3)
        chunks = list(
            client.chat.completions.create(**args, logprobs=True, top_logprobs=3, stream=True)
        )
    logprobs = whole.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.content is not None
    entries = logprobs.content
    assert "".join(e.token for e in entries) == whole.choices[0].message.content
    assert all(e.logprob <= 0 and len(e.top_logprobs) == 3 for e in entries)
    assert all(e.token in {t.token for t in e.top_logprobs} for e in entries)
    streamed = [
        e for c in chunks for ch in c.choices if ch.logprobs and ch.logprobs.content
        for e in ch.logprobs.content
    ]  # fmt: skip
    assert [e.model_dump() for e in streamed] == [e.model_dump() for e in entries]


def test_completion_logprobs_legacy_shape(stack: Stack) -> None:
    args: Any = {"model": "gpt-4o", "prompt": "Once upon", "max_tokens": 8, "seed": 2}
    with _client(stack) as client:
        whole = client.completions.create(**args, logprobs=2)
        chunks = list(client.completions.create(**args, logprobs=2, stream=True))
    lp = whole.choices[0].logprobs
    assert lp is not None
    assert lp.tokens is not None
    assert "".join(lp.tokens) == whole.choices[0].text
    assert lp.text_offset is not None
    assert lp.text_offset[0] == len("Once upon")
    assert lp.token_logprobs is not None
    assert all(v is not None and v <= 0 for v in lp.token_logprobs)
    tokens = [
        t for c in chunks for ch in c.choices if ch.logprobs for t in ch.logprobs.tokens or ()
    ]
    assert tokens == lp.tokens


def test_reasoning_model_streams_reasoning_content_first(stack: Stack) -> None:
    args: Any = {"model": "o3-mini", "messages": MESSAGES, "max_completion_tokens": 40}
    with _client(stack) as client:
        whole = client.chat.completions.create(**args, seed=9)
        chunks = list(
            client.chat.completions.create(
                **args, seed=9, stream=True, stream_options={"include_usage": True}
            )
        )
    message: Any = whole.choices[0].message
    assert message.reasoning_content
    assert whole.usage is not None
    assert whole.usage.completion_tokens == 40
    details = whole.usage.completion_tokens_details
    assert details is not None
    assert details.reasoning_tokens == 20
    deltas: list[Any] = [ch.delta for c in chunks for ch in c.choices]
    thinking = [d for d in deltas if getattr(d, "reasoning_content", None)]
    answer = [d for d in deltas if d.content]
    assert deltas.index(thinking[-1]) < deltas.index(answer[0])
    assert deltas[0].role == "assistant"
    assert "".join(d.reasoning_content for d in thinking) == message.reasoning_content
    assert "".join(d.content for d in answer) == message.content
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 20


def test_echo_model_answers_with_the_last_user_message(stack: Stack) -> None:
    text = "Repeat exactly: the durable log, 42 times!"
    messages: Any = [
        *MESSAGES,
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": text},
    ]
    with _client(stack) as client:
        whole = client.chat.completions.create(model="echo-llama-3.1-8b", messages=messages)
        chunks = list(
            client.chat.completions.create(
                model="echo-llama-3.1-8b", messages=messages, stream=True
            )
        )
        capped = client.completions.create(model="echo-llama-3.1-8b", prompt=text, max_tokens=3)
    assert whole.choices[0].message.content == text
    assert whole.choices[0].finish_reason == "stop"
    pieces = [ch.delta.content for c in chunks for ch in c.choices if ch.delta.content]
    assert "".join(pieces) == text
    assert len(pieces) > 5  # streamed piece by piece, not in one chunk
    assert capped.choices[0].text == "Repeat exactly:"
    assert capped.choices[0].finish_reason == "length"
