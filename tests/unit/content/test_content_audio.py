"""Fake speech: deterministic PCM16/WAV for a transcript, and chat audio responses."""

from __future__ import annotations

import base64
import io
import wave

import pytest

from fakeai.content import (
    InvalidRequestValue,
    build_audio_chat_completion,
    build_chat_completion,
    split_pieces,
)
from fakeai.content.audio import AUDIO_TTL_S, SAMPLE_RATE, synthesize_pcm16, wav_bytes

BODY = {"model": "gpt-4o-audio-preview", "messages": [{"role": "user", "content": "Hi"}]}


def test_pcm_is_deterministic_16_bit_and_grows_with_text() -> None:
    short = synthesize_pcm16(split_pieces("Hello"))
    longer = synthesize_pcm16(split_pieces("Hello there, friend"))
    assert short == synthesize_pcm16(split_pieces("Hello"))
    assert len(short) % 2 == 0
    assert len(longer) > len(short) > 0
    assert synthesize_pcm16([]) == b""


def test_wav_bytes_is_a_valid_wave_file() -> None:
    pcm = synthesize_pcm16(split_pieces("one two"))
    with wave.open(io.BytesIO(wav_bytes(pcm))) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SAMPLE_RATE)
        assert w.readframes(w.getnframes()) == pcm


@pytest.mark.parametrize("fmt", ["pcm16", "wav"])
def test_audio_chat_completion_shape(fmt: str) -> None:
    body = {**BODY, "audio": {"voice": "alloy", "format": fmt}, "max_tokens": 12}
    resp = build_audio_chat_completion(body, completion_id="chatcmpl-a", created=100, seed=4)
    text = build_chat_completion(body, completion_id="chatcmpl-a", created=100, seed=4)
    message = resp["choices"][0]["message"]
    assert message["content"] is None
    audio = message["audio"]
    assert set(audio) == {"id", "data", "transcript", "expires_at"}
    assert audio["id"].startswith("audio_")
    assert audio["transcript"] == text["choices"][0]["message"]["content"]
    assert audio["expires_at"] == 100 + AUDIO_TTL_S
    raw = base64.b64decode(audio["data"], validate=True)
    pcm = synthesize_pcm16(split_pieces(audio["transcript"]))
    assert raw == (wav_bytes(pcm) if fmt == "wav" else pcm)
    assert resp["usage"]["completion_tokens"] == len(split_pieces(audio["transcript"]))
    assert resp == build_audio_chat_completion(
        body, completion_id="chatcmpl-a", created=100, seed=4
    )


def test_audio_format_is_validated() -> None:
    with pytest.raises(InvalidRequestValue, match=r"audio\.format") as info:
        build_audio_chat_completion(
            {**BODY, "audio": {"format": "mp3"}}, completion_id="c", created=1, seed=1
        )
    assert info.value.param == "audio.format"
