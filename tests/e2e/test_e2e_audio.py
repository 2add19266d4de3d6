"""Speech, transcription and chat audio through the whole pipeline, with the official SDK (producer
+ edge under real uvicorn, single Redis and 3-master cluster): audio a player opens, of a
plausible length, streamed as generated; its replay from the log gives the same bytes."""

from __future__ import annotations

import base64
import io
import json
import wave
from pathlib import Path

import httpx
import openai
import pytest
from httpx_sse import connect_sse
from tests.support.stack import Stack

from fakeai.content.speech import MS_PER_CHAR

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

TEXT = "Durable streams keep every word, so a listener can come back and hear the rest."


def _client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key="x", max_retries=0, timeout=20)


def _replayed_audio(stack: Stack, sid: str) -> bytes:
    """The audio the stream's log holds, read back over SSE from /v1/streams."""
    with (
        httpx.Client(base_url=stack.url, timeout=20) as http,
        connect_sse(http, "GET", f"/v1/streams/{sid}") as source,
    ):
        events = [json.loads(s.data) for s in source.iter_sse()]
    assert events[-1]["type"] == "speech.audio.done"
    return b"".join(base64.b64decode(e["audio"]) for e in events[:-1])


def test_speech_streams_a_wav_of_plausible_length_that_replays_identically(
    stack: Stack, tmp_path: Path
) -> None:
    out = tmp_path / "speech.wav"
    with (
        _client(stack) as client,
        client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="alloy", input=TEXT, response_format="wav"
        ) as response,
    ):
        assert response.headers["content-type"] == "audio/wav"
        sid = response.headers["x-stream-id"]
        assert sid.startswith("speech_")
        response.stream_to_file(out)
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 24_000)
        seconds = w.getnframes() / w.getframerate()
        frames = w.readframes(w.getnframes())
    assert len(frames) == 2 * w.getnframes()  # the header's length is the data's
    letters = sum(c.isalnum() for c in TEXT)
    assert letters * MS_PER_CHAR / 1000 <= seconds <= 2 * letters * MS_PER_CHAR / 1000
    assert any(frames)  # a tone, not silence
    assert _replayed_audio(stack, sid) == out.read_bytes()


def test_speech_pcm_and_sse(stack: Stack) -> None:
    with _client(stack) as client:
        pcm = client.audio.speech.create(
            model="tts-1", voice="alloy", input=TEXT, response_format="pcm"
        )
        assert pcm.response.headers["content-type"] == "audio/pcm"
        raw = pcm.read()
        assert len(raw) % 2 == 0
        with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=TEXT, response_format="pcm", stream_format="sse"
        ) as response:
            lines = [json.loads(x[6:]) for x in response.iter_lines() if x.startswith("data: ")]
    assert [e["type"] for e in lines][-1] == "speech.audio.done"
    assert {e["type"] for e in lines[:-1]} == {"speech.audio.delta"}
    assert b"".join(base64.b64decode(e["audio"]) for e in lines[:-1]) == raw
    assert lines[-1]["usage"]["output_tokens"] == len(lines) - 1


def test_speech_refuses_formats_it_cannot_encode(stack: Stack) -> None:
    with _client(stack) as client, pytest.raises(openai.BadRequestError) as e:
        client.audio.speech.create(model="tts-1", voice="alloy", input="hi", response_format="mp3")
    assert e.value.status_code == 400
    body = e.value.body
    assert isinstance(body, dict)
    assert body["param"] == "response_format"
    assert "wav, pcm" in body["message"]


def _wav(seconds: float) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(b"\x10\x00" * int(16_000 * seconds))
    return buf.getvalue()


def test_transcription_streams_deltas_then_done(stack: Stack) -> None:
    audio = _wav(4.0)
    with _client(stack) as client:
        events = list(
            client.audio.transcriptions.create(
                model="gpt-4o-transcribe", file=("a.wav", audio, "audio/wav"), stream=True
            )
        )
        whole = client.audio.transcriptions.create(
            model="gpt-4o-transcribe", file=("a.wav", audio, "audio/wav")
        )
        text = client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", audio, "audio/wav"), response_format="text"
        )
    assert events[-1].type == "transcript.text.done"
    deltas = [e.delta for e in events[:-1] if e.type == "transcript.text.delta"]
    assert len(deltas) == len(events) - 1
    assert "".join(deltas) == events[-1].text
    assert events[-1].text == whole.text  # the same audio, the same transcript
    assert 4 <= len(whole.text.split()) <= 40  # ~2.5 words a second
    assert whole.usage is not None
    assert text.strip() == whole.text


def test_chat_audio_streams_delta_audio_and_audio_usage(stack: Stack) -> None:
    with _client(stack) as client:
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-audio-preview",
                modalities=["text", "audio"],
                audio={"voice": "alloy", "format": "pcm16"},
                messages=[{"role": "user", "content": "Say something"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    parts = [c.choices[0].delta.audio for c in chunks if c.choices and c.choices[0].delta.audio]
    assert parts
    assert len({p.id for p in parts if p.id}) == 1
    transcript = "".join(p.transcript or "" for p in parts)
    audio = b"".join(base64.b64decode(p.data) for p in parts if p.data)
    assert transcript
    assert len(audio) > 0
    assert len(audio) % 2 == 0  # whole 16-bit samples
    assert parts[-1].expires_at is not None
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.audio_tokens == usage.completion_tokens


def test_chat_audio_format_it_cannot_stream_is_a_400(stack: Stack) -> None:
    with _client(stack) as client, pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="gpt-4o-audio-preview",
            modalities=["text", "audio"],
            audio={"voice": "alloy", "format": "mp3"},
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        )
    body = e.value.body
    assert isinstance(body, dict)
    assert body["param"] == "audio.format"
    assert "pcm16" in body["message"]
