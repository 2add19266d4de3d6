"""Streams a chat completion with audio output as OpenAI chat audio deltas.

OpenAI streams ``modalities: ["text", "audio"]`` answers as ``chat.completion.chunk`` objects
whose deltas carry ``audio`` (``openai-python`` ``ChoiceDeltaAudio``-like dicts: ``id``,
``data`` base64, ``transcript``, ``expires_at``). Here each token step carries one transcript
piece and the base64 slice of audio that speaks it; the first delta also carries the role; a
last delta carries ``expires_at``; then the finish chunk and, if asked, the usage chunk.

Base64 slices are cut on 4-character boundaries, so every slice decodes on its own and their
concatenation is the whole ``message.audio.data``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fakeai.content.tokenizer import split_pieces
from fakeai.streaming.generators._common import Delta, Unit
from fakeai.streaming.generators._response import AUDIO, to_dict
from fakeai.streaming.generators.chat import (
    ChatStreamingGenerator,
    merge_chat_deltas,
    message_units,
)
from fakeai.timing import LatencyModel

__all__ = ["AudioStreamingGenerator", "audio_slices"]


def audio_slices(data_b64: str, pieces: list[str]) -> list[str]:
    """Split base64 audio into one slice per transcript piece, in proportion to each piece's
    spoken length (characters plus a pause), on 4-character boundaries."""
    if not pieces:
        return []
    weights = [len(p.strip()) + 1 for p in pieces]
    total = sum(weights)
    quads = len(data_b64) // 4
    cuts: list[int] = []
    acc = 0
    for w in weights[:-1]:
        acc += w
        cuts.append(4 * round(quads * acc / total))
    cuts.append(len(data_b64))
    out: list[str] = []
    start = 0
    for end in cuts:
        out.append(data_b64[start:end])
        start = end
    return out


def _merge(a: Delta, b: Delta) -> Delta | None:
    audio_a, audio_b = a.get("audio"), b.get("audio")
    if isinstance(audio_a, dict) and isinstance(audio_b, dict) and len(b) == 1:
        if "transcript" in audio_a and "transcript" in audio_b:
            return {
                **a,
                "audio": {
                    **audio_a,
                    "transcript": audio_a["transcript"] + audio_b["transcript"],
                    "data": audio_a["data"] + audio_b["data"],
                },
            }
        return None
    return merge_chat_deltas(a, b)


def audio_units(message: Mapping[str, Any]) -> list[Unit]:
    """One unit per transcript piece: ``{"audio": {id, transcript, data}}``; the first delta
    carries the role, the last unit also the ``expires_at`` delta. Without ``audio`` the
    message streams as text."""
    audio = message.get("audio")
    if audio is not None:
        audio = to_dict(audio, AUDIO, "message.audio")
    if not isinstance(audio, Mapping):
        return message_units(message)
    audio_id = audio.get("id")
    pieces = split_pieces(audio.get("transcript") or "")
    data = audio.get("data") or ""
    units: list[Unit]
    if pieces:
        units = [
            [({"audio": {"id": audio_id, "transcript": p, "data": s}}, 1)]
            for p, s in zip(pieces, audio_slices(data, pieces), strict=True)
        ]
    else:
        units = [[({"audio": {"id": audio_id, "transcript": "", "data": data}}, 0)]]
    first, tokens = units[0][0]
    units[0][0] = ({"role": "assistant", **first}, tokens)
    units[-1].append(({"audio": {"id": audio_id, "expires_at": audio.get("expires_at")}}, 0))
    return units


class AudioStreamingGenerator(ChatStreamingGenerator):
    """Streams chat audio answers (``message.audio``), one transcript piece per step.

    The chat generator with other units: each step is a transcript piece and its audio slice.
    ``chunk_size_bytes`` (FakeAI 0.3's argument) is kept as an attribute only: audio is cut
    per transcript piece, so that each slice speaks the text that travels with it.
    """

    def __init__(
        self,
        latency_manager: LatencyModel | None = None,
        chunk_size_bytes: int = 4096,
        *,
        chunk_tokens: int = 1,
    ) -> None:
        super().__init__(latency_manager, chunk_tokens=chunk_tokens)
        self.chunk_size_bytes = chunk_size_bytes

    @staticmethod
    def units(message: Mapping[str, Any]) -> list[Unit]:
        return audio_units(message)

    @staticmethod
    def merge(a: Delta, b: Delta) -> Delta | None:
        return _merge(a, b)
