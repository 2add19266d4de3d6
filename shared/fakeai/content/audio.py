"""Deterministic fake speech: a short tone per word, as PCM16 or WAV, and chat audio responses.

Speech is a tone per word (30 ms per character by default, pitch from the word's text) and a
30 ms pause after each piece: audio a person can play, whose length follows the text.

OpenAI's chat audio output (``modalities: ["text", "audio"]``, ``audio: {voice, format}``)
returns ``message.audio = {id, data, transcript, expires_at}`` with ``data`` the base64 audio.
Streaming requires ``format: "pcm16"`` (24 kHz, 16-bit little-endian, mono), which is what we
synthesise; ``"wav"`` wraps the same samples in a RIFF header.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Mapping
from functools import cache
from typing import Any

from fakeai.content.responses import (
    InvalidRequestValue,
    build_chat_completion,
    choice_rng,
)
from fakeai.content.tokenizer import split_pieces

__all__ = [
    "AUDIO_FORMATS",
    "AUDIO_TTL_S",
    "SAMPLE_RATE",
    "build_audio_chat_completion",
    "synthesize_pcm16",
    "wants_audio",
    "wav_bytes",
    "wav_header",
]

SAMPLE_RATE = 24_000
"""OpenAI's pcm16 rate."""

AUDIO_FORMATS = ("pcm16", "wav")
AUDIO_TTL_S = 3600
"""``expires_at`` is ``created`` plus this (OpenAI keeps audio for multi-turn use about an hour)."""

_BLOCK_S = 0.01
_BLOCK_SAMPLES = int(SAMPLE_RATE * _BLOCK_S)
_MS_PER_CHAR = 30
_GAP_BLOCKS = 3


@cache
def _tone_block(freq_hz: int) -> bytes:
    """10 ms of a sine at ``freq_hz``: a multiple of 100 Hz fits whole periods, so blocks chain
    without clicks and a word's tone is just ``block * count`` (no per-sample Python loop)."""
    amplitude = 8000
    samples = (
        int(amplitude * math.sin(2 * math.pi * freq_hz * i / SAMPLE_RATE))
        for i in range(_BLOCK_SAMPLES)
    )
    return struct.pack(f"<{_BLOCK_SAMPLES}h", *samples)


_SILENCE = bytes(2 * _BLOCK_SAMPLES)


def synthesize_pcm16(pieces: list[str], ms_per_char: int = _MS_PER_CHAR) -> bytes:
    """PCM16 audio for transcript pieces: per piece a tone (``ms_per_char`` per character,
    pitch from the piece's text) followed by 30 ms of silence; whitespace-only pieces are
    silence. The audio of a list is the concatenation of the audio of its pieces, so pieces
    can be synthesised (and streamed) one at a time."""
    out: list[bytes] = []
    for piece in pieces:
        word = piece.strip()
        if word:
            freq = 200 + 100 * (sum(map(ord, word)) % 8)
            out.append(_tone_block(freq) * max(1, len(word) * ms_per_char // 10))
        out.append(_SILENCE * _GAP_BLOCKS)
    return b"".join(out)


def wants_audio(body: Mapping[str, Any]) -> bool:
    """Does a chat request ask for audio output (``"audio"`` in ``modalities``)?"""
    modalities = body.get("modalities")
    return isinstance(modalities, list) and "audio" in modalities


def wav_bytes(pcm: bytes, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A RIFF/WAVE file (PCM, mono, 16-bit) holding ``pcm``."""
    return wav_header(len(pcm), sample_rate) + pcm


def wav_header(data_bytes: int, sample_rate: int = SAMPLE_RATE) -> bytes:
    """The 44-byte RIFF/WAVE header (PCM, mono, 16-bit) of ``data_bytes`` of samples: sent
    first, it lets a WAV be streamed whose length is known in advance."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        sample_rate,
        sample_rate * 2,
        2,
        16,
        b"data",
        data_bytes,
    )


def build_audio_chat_completion(
    body: Mapping[str, Any],
    *,
    completion_id: str,
    created: int,
    seed: int | None,
    model: str | None = None,
) -> dict[str, Any]:
    """A ``chat.completion`` whose choices answer in audio: ``message.content`` is None and
    ``message.audio`` holds ``id``, base64 ``data``, ``transcript`` and ``expires_at``.

    The transcript is the text :func:`build_chat_completion` would give (same length controls);
    ``body["audio"]["format"]`` picks ``pcm16`` or ``wav`` (default ``pcm16``).
    """
    audio_opts = body.get("audio") or {}
    fmt = audio_opts.get("format", "pcm16") if isinstance(audio_opts, Mapping) else "pcm16"
    if fmt not in AUDIO_FORMATS:
        raise InvalidRequestValue(
            "audio.format", f"audio.format must be one of {', '.join(AUDIO_FORMATS)}; got {fmt!r}"
        )
    text_body = {
        k: v for k, v in body.items() if k not in ("tools", "tool_choice", "response_format")
    }
    response = build_chat_completion(
        text_body, completion_id=completion_id, created=created, seed=seed, model=model
    )
    for choice in response["choices"]:
        message = choice["message"]
        transcript = message["content"] or ""
        pcm = synthesize_pcm16(split_pieces(transcript))
        data = wav_bytes(pcm) if fmt == "wav" else pcm
        rng = choice_rng(completion_id, seed, 10_000 + choice["index"])
        message["content"] = None
        message["audio"] = {
            "id": f"audio_{rng.getrandbits(96):024x}",
            "data": base64.b64encode(data).decode("ascii"),
            "transcript": transcript,
            "expires_at": created + AUDIO_TTL_S,
        }
    # Every output token is spoken: the transcript's tokens are counted as audio tokens, as
    # OpenAI reports them (``completion_tokens_details.audio_tokens``).
    usage = response["usage"]
    usage["prompt_tokens_details"] = {**usage["prompt_tokens_details"], "audio_tokens": 0}
    usage["completion_tokens_details"] = {
        **usage["completion_tokens_details"],
        "audio_tokens": usage["completion_tokens"],
        "text_tokens": 0,
    }
    return response
