"""AudioStreamingGenerator: chat audio deltas with aligned transcript and base64 slices."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from fakeai.content import build_audio_chat_completion
from fakeai.streaming.base import StreamChunk, StreamContext, StreamType
from fakeai.streaming.generators import AudioStreamingGenerator
from fakeai.streaming.generators.audio import audio_slices

SID = "chatcmpl-audio"


def ctx(**kw: Any) -> StreamContext:
    return StreamContext(stream_id=SID, stream_type=StreamType.AUDIO, model="m", **kw)


def build(seed: int, **body: Any) -> dict[str, Any]:
    return build_audio_chat_completion(
        {"model": "m", "messages": [{"role": "user", "content": "Hi"}], **body},
        completion_id=SID,
        created=50,
        seed=seed,
    )


async def collect(resp: Any, context: StreamContext, chunk_tokens: int = 1) -> list[StreamChunk]:
    gen = AudioStreamingGenerator(chunk_tokens=chunk_tokens)
    return [c async for c in gen.generate(context, resp)]


def test_audio_slices_decode_alone_and_concatenate() -> None:
    data = base64.b64encode(bytes(range(256)) * 7).decode()
    pieces = ["Hello", " wonderful", " world", "!"]
    slices = audio_slices(data, pieces)
    assert len(slices) == len(pieces)
    assert "".join(slices) == data
    assert all(len(s) % 4 == 0 for s in slices)
    assert b"".join(base64.b64decode(s) for s in slices) == base64.b64decode(data)
    assert len(slices[1]) > len(slices[3])  # longer words speak longer


@pytest.mark.parametrize("chunk_tokens", [1, 3])
async def test_stream_reassembles_transcript_and_audio(chunk_tokens: int) -> None:
    for seed in range(5):
        resp = build(seed, n=2)
        chunks = await collect(resp, ctx(include_usage=True), chunk_tokens)
        for choice in resp["choices"]:
            deltas = [
                ch["delta"]
                for c in chunks
                for ch in c.data["choices"]
                if ch["index"] == choice["index"]
            ]
            audio = choice["message"]["audio"]
            assert deltas[0]["role"] == "assistant"
            assert deltas[0]["audio"]["id"] == audio["id"]
            parts = [d["audio"] for d in deltas if "audio" in d]
            assert "".join(p.get("transcript", "") for p in parts) == audio["transcript"]
            assert "".join(p.get("data", "") for p in parts) == audio["data"]
            assert parts[-1] == {"id": audio["id"], "expires_at": audio["expires_at"]}
            assert deltas[-1] == {}
        usage = chunks[-1].data["usage"]
        assert chunks[-1].data["choices"] == []
        assert usage["completion_tokens"] == sum(c.token_count for c in chunks)
        assert usage == resp["usage"]
        assert {c.data["object"] for c in chunks} == {"chat.completion.chunk"}
