"""Deterministic fake text-to-speech (``POST /v1/audio/speech``): its audio, as stream events.

The audio speaks the request's ``input`` with :func:`fakeai.content.audio.synthesize_pcm16`, one
token piece at a time, at :data:`MS_PER_CHAR` per character divided by ``speed`` (about 14
characters a second at speed 1, a speaking pace), so its length is plausible for the text.

The events are OpenAI's speech stream events (``stream_format: "sse"``), one per piece::

    {"type": "speech.audio.delta", "audio": "<base64 of this piece's bytes>"}   one token each
    {"type": "speech.audio.done", "usage": {"input_tokens", "output_tokens", "total_tokens"}}

and they are also what a raw audio answer is made of: the concatenated bytes of the deltas are
the whole file. ``wav`` puts the 44-byte header (with the exact length: every sample is known
before the first is sent) in front of the first delta's samples; ``pcm`` is headerless 24 kHz
16-bit little-endian mono. The bytes are base64-encoded once, inside the event JSON that the log
stores; the edge decodes them for a raw answer.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from fakeai.content.audio import SAMPLE_RATE, synthesize_pcm16, wav_header
from fakeai.content.responses import InvalidRequestValue
from fakeai.content.responses_api import BuiltResponse
from fakeai.content.tokenizer import count_tokens, split_pieces

__all__ = [
    "DEFAULT_SPEECH_FORMAT",
    "MAX_SPEED",
    "MIN_SPEED",
    "MS_PER_CHAR",
    "SPEECH_FORMATS",
    "build_speech",
    "media_type",
    "speech_format",
]

SPEECH_FORMATS = ("wav", "pcm")
"""``response_format`` values served; OpenAI's others (mp3, opus, aac, flac) need an encoder."""
DEFAULT_SPEECH_FORMAT = "wav"
"""Without ``response_format`` (OpenAI's default is mp3, which is not served): WAV."""
MS_PER_CHAR = 70
MIN_SPEED, MAX_SPEED = 0.25, 4.0
_MEDIA_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm"}


def speech_format(body: Mapping[str, Any]) -> str:
    """The request's ``response_format`` (default :data:`DEFAULT_SPEECH_FORMAT`); an
    :class:`InvalidRequestValue` naming the formats offered for any other."""
    fmt = body.get("response_format") or DEFAULT_SPEECH_FORMAT
    if fmt not in SPEECH_FORMATS:
        raise InvalidRequestValue(
            "response_format",
            f"response_format {fmt!r} is not supported by this server; "
            f"supported: {', '.join(SPEECH_FORMATS)}",
        )
    return str(fmt)


def media_type(fmt: str) -> str:
    """The Content-Type of a raw answer in ``fmt``."""
    return _MEDIA_TYPES[fmt]


def build_speech(body: Mapping[str, Any]) -> BuiltResponse:
    """The speech of ``body["input"]`` as events (module docstring); ``response`` holds the
    usage and the format."""
    text = body.get("input")
    if not isinstance(text, str) or not text:
        raise InvalidRequestValue("input", "input must be a non-empty string")
    fmt = speech_format(body)
    speed = body.get("speed", 1.0)
    if not isinstance(speed, (int, float)) or not MIN_SPEED <= speed <= MAX_SPEED:
        raise InvalidRequestValue(
            "speed", f"speed must be a number from {MIN_SPEED} to {MAX_SPEED}; got {speed!r}"
        )
    pieces = split_pieces(text)
    ms = max(1, round(MS_PER_CHAR / speed))
    chunks = [synthesize_pcm16([p], ms) for p in pieces]
    if fmt == "wav":
        chunks[0] = wav_header(sum(map(len, chunks))) + chunks[0]
    events: list[dict[str, Any]] = [
        {"type": "speech.audio.delta", "audio": base64.b64encode(c).decode("ascii")} for c in chunks
    ]
    usage = {
        "input_tokens": count_tokens(text),
        "output_tokens": len(pieces),
        "total_tokens": count_tokens(text) + len(pieces),
    }
    events.append({"type": "speech.audio.done", "usage": usage})
    response = {"format": fmt, "sample_rate": SAMPLE_RATE, "usage": usage}
    return BuiltResponse(response=response, events=events, tokens=[1] * len(chunks) + [0])
