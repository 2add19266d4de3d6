"""Deterministic fake transcription (``POST /v1/audio/transcriptions``): a transcript and its
stream events.

No audio is decoded: the transcript is seeded prose whose length follows the audio's duration
(:data:`WORDS_PER_S`, a speaking pace), and the seed is the audio's digest, so the same upload
always gives the same transcript. The edge reads the upload and passes on only what the
transcript depends on (:func:`upload_facts`), never the audio itself.

Events, as OpenAI streams them (``stream=true``)::

    {"type": "transcript.text.delta", "delta": "<piece>"}                    one token each
    {"type": "transcript.text.done", "text": "<whole>", "usage": {...}}

``usage`` is OpenAI's token usage of the ``gpt-4o-transcribe`` family: ``{"type": "tokens",
"input_tokens", "input_token_details": {"text_tokens", "audio_tokens"}, "output_tokens",
"total_tokens"}``, the audio counted at :data:`AUDIO_TOKENS_PER_S`.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Mapping
from typing import Any

from fakeai.content.prose import prose
from fakeai.content.responses import InvalidRequestValue
from fakeai.content.responses_api import BuiltResponse
from fakeai.content.tokenizer import count_tokens, split_pieces

__all__ = [
    "AUDIO_TOKENS_PER_S",
    "WORDS_PER_S",
    "audio_seconds",
    "build_transcription",
    "upload_facts",
]

WORDS_PER_S = 2.5
AUDIO_TOKENS_PER_S = 10
_UNKNOWN_BYTES_PER_S = 16_000
"""Bytes a second of audio in a format whose header is not read (128 kbit/s, as MP3 often)."""


def audio_seconds(data: bytes) -> float:
    """The duration of an upload: from a WAV header (byte rate and ``data`` size), else from
    its size at :data:`_UNKNOWN_BYTES_PER_S`."""
    if len(data) >= 44 and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        pos, byte_rate = 12, 0
        while pos + 8 <= len(data):
            tag = data[pos : pos + 4]
            size: int = struct.unpack_from("<I", data, pos + 4)[0]
            if tag == b"fmt " and size >= 16:
                byte_rate = int(struct.unpack_from("<I", data, pos + 16)[0])
            elif tag == b"data" and byte_rate:
                return min(size, len(data) - pos - 8) / byte_rate
            pos += 8 + size + (size & 1)
    return len(data) / _UNKNOWN_BYTES_PER_S


def upload_facts(data: bytes) -> dict[str, Any]:
    """What a transcript depends on: the audio's duration, size and digest."""
    return {
        "audio_seconds": round(audio_seconds(data), 3),
        "audio_bytes": len(data),
        "audio_digest": hashlib.blake2b(data, digest_size=12).hexdigest(),
    }


def build_transcription(body: Mapping[str, Any], *, stream_id: str) -> BuiltResponse:
    """The transcript of the upload ``body`` describes (:func:`upload_facts`), as events
    (module docstring); ``response`` is the non-streaming JSON answer (``text``, ``usage``)."""
    seconds = body.get("audio_seconds")
    if not isinstance(seconds, (int, float)) or seconds < 0:
        raise InvalidRequestValue("file", "the uploaded audio has no duration")
    seed = body.get("seed")
    rng = random.Random(f"{body.get('audio_digest') or stream_id}:{seed}")
    text = prose(rng, max(1, round(seconds * WORDS_PER_S)))
    pieces = split_pieces(text)
    prompt = body.get("prompt")
    text_in = count_tokens(prompt) if isinstance(prompt, str) else 0
    audio_in = max(1, round(seconds * AUDIO_TOKENS_PER_S))
    usage = {
        "type": "tokens",
        "input_tokens": text_in + audio_in,
        "input_token_details": {"text_tokens": text_in, "audio_tokens": audio_in},
        "output_tokens": len(pieces),
        "total_tokens": text_in + audio_in + len(pieces),
    }
    events: list[dict[str, Any]] = [{"type": "transcript.text.delta", "delta": p} for p in pieces]
    events.append({"type": "transcript.text.done", "text": text, "usage": usage})
    return BuiltResponse(
        response={"text": text, "usage": usage},
        events=events,
        tokens=[1] * len(pieces) + [0],
    )
