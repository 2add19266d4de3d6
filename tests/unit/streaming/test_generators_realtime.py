"""RealtimeStreamingGenerator: GA Realtime server events for one response."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from fakeai.content import build_audio_chat_completion, build_chat_completion
from fakeai.streaming.base import StreamChunk, StreamContext, StreamType
from fakeai.streaming.generators import RealtimeStreamingGenerator

BODY = {"model": "gpt-realtime", "messages": [{"role": "user", "content": "Hi"}]}


def ctx(modality: str = "text") -> StreamContext:
    return StreamContext(
        stream_id="rt-1",
        stream_type=StreamType.REALTIME,
        model="gpt-realtime",
        metadata={"modality": modality},
    )


async def collect(resp: Any, context: StreamContext, chunk_tokens: int = 1) -> list[StreamChunk]:
    gen = RealtimeStreamingGenerator(chunk_tokens=chunk_tokens)
    return [c async for c in gen.generate(context, resp)]


def types(chunks: list[StreamChunk]) -> list[str]:
    return [c.data["type"] for c in chunks]


@pytest.mark.parametrize("chunk_tokens", [1, 4])
async def test_text_response_event_sequence(chunk_tokens: int) -> None:
    resp = build_chat_completion({**BODY, "max_tokens": 5}, completion_id="c1", created=1, seed=2)
    text = resp["choices"][0]["message"]["content"]
    chunks = await collect(resp, ctx(), chunk_tokens)
    ts = types(chunks)
    deltas = [c.data for c in chunks if c.data["type"] == "response.output_text.delta"]
    assert ts == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * len(deltas),
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    assert len(deltas) == (5 + chunk_tokens - 1) // chunk_tokens
    assert "".join(d["delta"] for d in deltas) == text
    item_id = chunks[1].data["item"]["id"]
    for d in deltas:
        assert (d["item_id"], d["output_index"], d["content_index"]) == (item_id, 0, 0)
        assert d["response_id"] == chunks[0].data["response"]["id"]
    done = chunks[-1].data["response"]
    assert done["status"] == "incomplete"
    assert done["status_details"] == {"type": "incomplete", "reason": "max_output_tokens"}
    assert done["output"][0]["content"] == [{"type": "output_text", "text": text}]
    assert done["usage"]["output_tokens"] == 5 == sum(c.token_count for c in chunks)
    assert done["usage"]["input_tokens"] == resp["usage"]["prompt_tokens"]
    ids = [c.data["event_id"] for c in chunks]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("event_") for i in ids)
    assert [c.is_last for c in chunks].count(True) == 1
    assert chunks[-1].is_last
    assert [c.chunk_type for c in chunks] == ts
    json.dumps([c.data for c in chunks])


async def test_audio_modality_streams_transcript_and_audio() -> None:
    resp = build_audio_chat_completion(BODY, completion_id="c2", created=1, seed=3)
    audio = resp["choices"][0]["message"]["audio"]
    chunks = await collect(resp, ctx("audio"))
    ts = types(chunks)
    assert "response.output_text.delta" not in ts
    transcript = "".join(
        c.data["delta"]
        for c in chunks
        if c.data["type"] == "response.output_audio_transcript.delta"
    )
    data = "".join(
        c.data["delta"] for c in chunks if c.data["type"] == "response.output_audio.delta"
    )
    assert transcript == audio["transcript"]
    assert data == audio["data"]
    assert ts[-6:] == [
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    assert chunks[-1].data["response"]["status"] == "completed"


async def test_audio_modality_from_text_response_synthesises_audio() -> None:
    resp = build_chat_completion(BODY, completion_id="c3", created=1, seed=3)
    chunks = await collect(resp, ctx("audio"))
    data = "".join(
        c.data["delta"] for c in chunks if c.data["type"] == "response.output_audio.delta"
    )
    assert len(base64.b64decode(data)) > 0


async def test_tool_call_becomes_function_call_item() -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
    resp = build_chat_completion({**BODY, "tools": [tool]}, completion_id="c4", created=1, seed=1)
    call = resp["choices"][0]["message"]["tool_calls"][0]
    chunks = await collect(resp, ctx())
    args = "".join(
        c.data["delta"]
        for c in chunks
        if c.data["type"] == "response.function_call_arguments.delta"
    )
    assert args == call["function"]["arguments"]
    added = chunks[1].data["item"]
    assert (added["type"], added["name"], added["call_id"]) == ("function_call", "f", call["id"])
    done = chunks[-1].data["response"]
    assert done["output"][0]["arguments"] == args


async def test_bad_modality_is_rejected() -> None:
    with pytest.raises(ValueError, match="modality"):
        await collect({"choices": []}, ctx("video"))
