"""Chunking utilities: split text into streamable pieces, build delta objects, track progress.

- :class:`TokenChunker` splits text into word/punctuation tokens and groups them into chunks
  whose concatenation is the original text (whitespace travels with the following token, as in
  BPE tokenizers, so a client that appends chunks rebuilds the text exactly).
- :class:`DeltaGenerator` builds the ``delta`` objects of OpenAI streaming chunks.
- :class:`ProgressTracker` follows one stream's progress and throughput.
- :class:`AdaptiveChunker` sizes chunks so that each takes about a target time to deliver.

All of it is pure (no I/O, no event loop); clocks are injectable for tests.

Compatibility surface: every public name and call of FakeAI 0.3's ``fakeai.streaming.chunking``
(``TokenChunker.chunk_tokens`` and ``TOKEN_PATTERN``, ``DeltaGenerator.reset()`` and
``finish_reason=``, ``ProgressTracker`` counters, ETA and ``to_dict()``,
``AdaptiveChunker.current_chunk_size`` and ``reset()``, ``TokenTiming``). Where upstream put
a ``finish_reason`` inside a chat delta or raw bytes in an audio delta, this keeps OpenAI's
wire shape; ``docs/library.md`` lists each difference.
"""

from __future__ import annotations

import base64
import random
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AdaptiveChunker", "DeltaGenerator", "ProgressTracker", "TokenChunker", "TokenTiming"]

Clock = Callable[[], float]

# A token is a run of word characters or one other non-space character (punctuation, symbols).
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


@dataclass(slots=True)
class TokenTiming:
    """When one token is due: its text, the delay before it, the wall-clock time it was made."""

    token: str
    delay_seconds: float
    timestamp: float = field(default_factory=time.time)


def _check_size(arg: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{arg} must be an integer >= 1; got {value!r}")


class TokenChunker:
    """Splits text into tokens and groups them into chunks of ``min..max`` tokens.

    Chunk sizes are drawn uniformly from ``[min_chunk_size, max_chunk_size]`` with a
    ``random.Random(seed)`` (pass ``seed`` for repeatable chunking). Only the last chunk may
    hold fewer than ``min_chunk_size`` tokens, when the text runs out.
    """

    def __init__(self, min_chunk_size: int = 1, max_chunk_size: int = 10, seed: int | None = None):
        _check_size("min_chunk_size", min_chunk_size)
        _check_size("max_chunk_size", max_chunk_size)
        if min_chunk_size > max_chunk_size:
            raise ValueError(
                f"min_chunk_size ({min_chunk_size}) must be <= max_chunk_size ({max_chunk_size})"
            )
        self.min_chunk_size = min_chunk_size
        self.max_chunk_size = max_chunk_size
        self._rng = random.Random(seed)

    TOKEN_PATTERN = _TOKEN_RE
    """A token: a run of word characters, or one other non-space character."""

    def _sizes(self) -> Iterator[int]:
        """Chunk sizes, endlessly: drawn from ``[min, max]`` (fixed when they are equal)."""
        lo, hi = self.min_chunk_size, self.max_chunk_size
        rng = self._rng
        while True:
            yield lo if lo == hi else rng.randint(lo, hi)

    @staticmethod
    def tokenize(text: str) -> list[str]:
        """Words and punctuation marks of ``text``, whitespace dropped.

        ``"Hello, world!"`` gives ``['Hello', ',', 'world', '!']``.
        """
        return _TOKEN_RE.findall(text)

    def chunk_text(self, text: str) -> list[str]:
        """``text`` cut into chunks of whole tokens; ``"".join(chunks) == text``.

        Each chunk carries the whitespace before its first token; the first chunk also carries
        any leading whitespace and the last one any trailing whitespace. Text without tokens
        gives ``[text]`` (or ``[]`` for ``""``).
        """
        ends = [m.end() for m in _TOKEN_RE.finditer(text)]
        if not ends:
            return [text] if text else []
        chunks: list[str] = []
        start = 0
        i = 0
        n = len(ends)
        sizes = self._sizes()
        while i < n:
            i = min(n, i + next(sizes))
            end = ends[i - 1] if i < n else len(text)
            chunks.append(text[start:end])
            start = end
        return chunks

    def chunk_tokens(self, tokens: list[str]) -> list[list[str]]:
        """``tokens`` grouped in order into lists of ``min..max`` tokens (as :meth:`chunk_text`
        sizes its chunks); only the last group may be shorter."""
        groups: list[list[str]] = []
        sizes = self._sizes()
        i = 0
        while i < len(tokens):
            size = next(sizes)
            groups.append(tokens[i : i + size])
            i += size
        return groups


def _new_audio_id() -> str:
    return f"audio_{secrets.token_hex(12)}"


class DeltaGenerator:
    """Builds the ``delta`` objects of OpenAI streaming chunks (only the fields that are set).

    ``audio_id`` is the id every audio delta of this generator carries (one per response, as
    OpenAI does); a random ``audio_…`` id when not given. :meth:`reset` starts a new response.
    """

    def __init__(self, audio_id: str | None = None) -> None:
        self.audio_id = audio_id if audio_id is not None else _new_audio_id()

    def reset(self) -> None:
        """Start a new response: a new random ``audio_id``."""
        self.audio_id = _new_audio_id()

    @staticmethod
    def generate_chat_delta(
        role: str | None = None,
        content: str | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
        finish_reason: str | None = None,
        refusal: str | None = None,
        reasoning_content: str | None = None,
    ) -> dict[str, Any]:
        """A chat ``choices[].delta``: ``{"role": "assistant", "content": "Hello"}``.

        ``finish_reason`` is accepted (upstream's keyword) but never put in the delta: OpenAI
        sends it beside the delta, in the choice; :meth:`chat_choice` builds that choice.
        """
        delta: dict[str, Any] = {}
        if role is not None:
            delta["role"] = role
        if content is not None:
            delta["content"] = content
        if reasoning_content is not None:
            delta["reasoning_content"] = reasoning_content
        if refusal is not None:
            delta["refusal"] = refusal
        if tool_calls is not None:
            delta["tool_calls"] = tool_calls
        return delta

    @staticmethod
    def chat_choice(
        delta: dict[str, Any], finish_reason: str | None = None, index: int = 0
    ) -> dict[str, Any]:
        """One ``choices[]`` entry of a ``chat.completion.chunk``: the delta, and the
        ``finish_reason`` beside it (OpenAI's shape)."""
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    @staticmethod
    def generate_completion_delta(
        text: str | None = None, finish_reason: str | None = None
    ) -> dict[str, Any]:
        """A legacy completion piece: ``{"text": "Hello"}``, plus ``finish_reason`` when given
        (both are fields of a completions ``choices[]`` entry, so this is OpenAI's shape)."""
        delta: dict[str, Any] = {}
        if text is not None:
            delta["text"] = text
        if finish_reason is not None:
            delta["finish_reason"] = finish_reason
        return delta

    def generate_audio_delta(
        self,
        audio_chunk: bytes | None = None,
        transcript_delta: str | None = None,
        audio_id: str | None = None,
    ) -> dict[str, Any]:
        """A chat audio delta: ``{"audio": {"id", "data", "transcript"}}``.

        ``data`` is ``audio_chunk`` in base64 (present when the chunk is not empty);
        ``transcript`` is present when given. OpenAI's streamed chat audio sends these same
        three fields of ``delta.audio`` (audio output guide, "Streaming").
        """
        audio: dict[str, Any] = {"id": audio_id if audio_id is not None else self.audio_id}
        if audio_chunk:
            audio["data"] = base64.b64encode(audio_chunk).decode("ascii")
        if transcript_delta is not None:
            audio["transcript"] = transcript_delta
        return {"audio": audio}


class ProgressTracker:
    """Progress and throughput of one stream of ``total_tokens`` tokens (None: not known).

    Times are measured from construction with ``clock`` (seconds; ``time.perf_counter``).
    ``tokens_generated`` / ``chunks_generated`` are upstream's names for the counters.
    """

    def __init__(self, total_tokens: int | None = None, clock: Clock = time.perf_counter) -> None:
        if total_tokens is not None and (
            isinstance(total_tokens, bool) or not isinstance(total_tokens, int) or total_tokens < 0
        ):
            raise ValueError(f"total_tokens must be an integer >= 0 or None; got {total_tokens!r}")
        self.total_tokens = total_tokens
        self.tokens_received = 0
        self.chunks_received = 0
        self._clock = clock
        self.start_time = clock()
        self.first_chunk_time: float | None = None
        self.last_chunk_time: float | None = None

    def record_chunk(self, token_count: int) -> None:
        """A chunk of ``token_count`` tokens arrived."""
        if token_count < 0:
            raise ValueError(f"token_count must be >= 0; got {token_count!r}")
        now = self._clock()
        if self.first_chunk_time is None:
            self.first_chunk_time = now
        self.last_chunk_time = now
        self.tokens_received += token_count
        self.chunks_received += 1

    @property
    def tokens_generated(self) -> int:
        return self.tokens_received

    @property
    def chunks_generated(self) -> int:
        return self.chunks_received

    def progress_percentage(self) -> float:
        """Tokens received as a percentage of the total (0..100): 100 when the total is 0,
        0 when it is not known."""
        total = self.total_tokens
        if total is None:
            return 0.0
        if total == 0:
            return 100.0
        return min(100.0, 100.0 * self.tokens_received / total)

    def elapsed_ms(self) -> float:
        return (self._clock() - self.start_time) * 1000.0

    def tokens_per_second(self) -> float:
        """Tokens received per second since the start (0.0 before any time has passed)."""
        elapsed = self._clock() - self.start_time
        return self.tokens_received / elapsed if elapsed > 0 else 0.0

    def time_to_first_chunk_ms(self) -> float | None:
        """Milliseconds from the start to the first chunk, None before it."""
        if self.first_chunk_time is None:
            return None
        return (self.first_chunk_time - self.start_time) * 1000.0

    def estimated_time_remaining_seconds(self) -> float | None:
        """Seconds left at the current rate; None before the first chunk or without a total."""
        tps = self.tokens_per_second()
        if self.total_tokens is None or self.first_chunk_time is None or tps <= 0:
            return None
        return max(0, self.total_tokens - self.tokens_received) / tps

    def is_complete(self) -> bool:
        return self.total_tokens is not None and self.tokens_received >= self.total_tokens

    def to_dict(self) -> dict[str, Any]:
        """The counters and derived figures by upstream's names."""
        return {
            "total_tokens": self.total_tokens,
            "tokens_generated": self.tokens_received,
            "chunks_generated": self.chunks_received,
            "progress_percentage": self.progress_percentage(),
            "time_to_first_chunk_ms": self.time_to_first_chunk_ms(),
            "tokens_per_second": self.tokens_per_second(),
            "estimated_time_remaining_seconds": self.estimated_time_remaining_seconds(),
        }


class AdaptiveChunker:
    """Adapts the chunk size (tokens) so that delivering a chunk takes about the target time.

    A chunk that took less than the target means the link keeps up: the next chunks grow in
    proportion (``size * target / actual``, at most doubling per step); a slower one shrinks
    them (at most halving). Inside a ±10 % band around the target the size stays. The size is
    always within ``[min_chunk_size, max_chunk_size]``.
    """

    TOLERANCE = 0.1

    def __init__(
        self,
        initial_chunk_size: int = 5,
        target_chunk_delay_ms: float = 50.0,
        min_chunk_size: int = 1,
        max_chunk_size: int = 50,
    ) -> None:
        _check_size("initial_chunk_size", initial_chunk_size)
        _check_size("min_chunk_size", min_chunk_size)
        _check_size("max_chunk_size", max_chunk_size)
        if min_chunk_size > max_chunk_size:
            raise ValueError(
                f"min_chunk_size ({min_chunk_size}) must be <= max_chunk_size ({max_chunk_size})"
            )
        if not min_chunk_size <= initial_chunk_size <= max_chunk_size:
            raise ValueError(
                f"initial_chunk_size must be within [min_chunk_size, max_chunk_size] = "
                f"[{min_chunk_size}, {max_chunk_size}]; got {initial_chunk_size}"
            )
        if not target_chunk_delay_ms > 0:
            raise ValueError(f"target_chunk_delay_ms must be > 0; got {target_chunk_delay_ms!r}")
        self.min_chunk_size = min_chunk_size
        self.max_chunk_size = max_chunk_size
        self.target_chunk_delay_ms = float(target_chunk_delay_ms)
        self.initial_chunk_size = initial_chunk_size
        self._size = initial_chunk_size

    @property
    def current_chunk_size(self) -> int:
        """The chunk size now (:meth:`get_chunk_size`); settable within the bounds."""
        return self._size

    @current_chunk_size.setter
    def current_chunk_size(self, value: int) -> None:
        _check_size("current_chunk_size", value)
        if not self.min_chunk_size <= value <= self.max_chunk_size:
            raise ValueError(
                f"current_chunk_size must be within [{self.min_chunk_size}, "
                f"{self.max_chunk_size}]; got {value}"
            )
        self._size = value

    def reset(self) -> None:
        """Back to ``initial_chunk_size``, as a new stream starts."""
        self._size = self.initial_chunk_size

    def adjust_chunk_size(self, actual_delay_ms: float) -> int:
        """Adapt to a chunk that took ``actual_delay_ms`` to deliver; returns the new size."""
        if not actual_delay_ms >= 0:
            raise ValueError(f"actual_delay_ms must be >= 0; got {actual_delay_ms!r}")
        target = self.target_chunk_delay_ms
        size = self._size
        if actual_delay_ms < target * (1 - self.TOLERANCE):
            ratio = 2.0 if actual_delay_ms == 0 else min(2.0, target / actual_delay_ms)
            size = max(size + 1, round(size * ratio))
        elif actual_delay_ms > target * (1 + self.TOLERANCE):
            ratio = max(0.5, target / actual_delay_ms)
            size = min(size - 1, round(size * ratio))
        self._size = max(self.min_chunk_size, min(self.max_chunk_size, size))
        return self._size

    def get_chunk_size(self) -> int:
        return self._size
