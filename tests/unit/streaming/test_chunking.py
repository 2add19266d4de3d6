"""Chunking utilities: tokenizer, chunk grouping, deltas, progress and adaptive sizing."""

from __future__ import annotations

import base64

import pytest

from fakeai.streaming.chunking import (
    AdaptiveChunker,
    DeltaGenerator,
    ProgressTracker,
    TokenChunker,
)

TEXT = (
    "  Streaming, done right: every token (and its spacing) arrives in order!\n"
    "Second line...   with gaps.  "
)


def test_tokenize_document_example() -> None:
    assert TokenChunker().tokenize("Hello, world!") == ["Hello", ",", "world", "!"]
    assert TokenChunker.tokenize("  ") == []


@pytest.mark.parametrize(("lo", "hi"), [(1, 1), (1, 10), (3, 3), (2, 5), (1, 100)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chunk_text_preserves_text_and_bounds(lo: int, hi: int, seed: int) -> None:
    chunker = TokenChunker(min_chunk_size=lo, max_chunk_size=hi, seed=seed)
    chunks = chunker.chunk_text(TEXT)
    assert "".join(chunks) == TEXT
    sizes = [len(TokenChunker.tokenize(c)) for c in chunks]
    assert all(lo <= s <= hi for s in sizes[:-1]), sizes
    assert 1 <= sizes[-1] <= hi
    assert sum(sizes) == len(TokenChunker.tokenize(TEXT))


def test_chunk_text_whitespace_travels_with_next_token() -> None:
    chunks = TokenChunker(1, 1).chunk_text("Hello, world!")
    assert chunks == ["Hello", ",", " world", "!"]


def test_chunk_text_is_repeatable_with_seed() -> None:
    a = TokenChunker(1, 10, seed=7).chunk_text(TEXT)
    b = TokenChunker(1, 10, seed=7).chunk_text(TEXT)
    assert a == b


def test_chunk_text_without_tokens() -> None:
    assert TokenChunker().chunk_text("") == []
    assert TokenChunker().chunk_text("   ") == ["   "]


@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        ({"min_chunk_size": 0}, "min_chunk_size"),
        ({"max_chunk_size": 0}, "max_chunk_size"),
        ({"min_chunk_size": 5, "max_chunk_size": 2}, "min_chunk_size"),
        ({"min_chunk_size": 1.5}, "min_chunk_size"),
    ],
)
def test_token_chunker_validates(kwargs: dict[str, object], arg: str) -> None:
    with pytest.raises(ValueError, match=arg):
        TokenChunker(**kwargs)  # type: ignore[arg-type]


def test_chat_delta_only_set_fields() -> None:
    gen = DeltaGenerator()
    assert gen.generate_chat_delta(role="assistant", content="Hello") == {
        "role": "assistant",
        "content": "Hello",
    }
    assert gen.generate_chat_delta(content="") == {"content": ""}
    assert gen.generate_chat_delta() == {}
    call = {"index": 0, "function": {"arguments": "{"}}
    assert gen.generate_chat_delta(tool_calls=[call]) == {"tool_calls": [call]}


def test_completion_delta() -> None:
    assert DeltaGenerator.generate_completion_delta(text="Hello") == {"text": "Hello"}


def test_audio_delta_shape() -> None:
    gen = DeltaGenerator(audio_id="audio_1")
    delta = gen.generate_audio_delta(audio_chunk=b"audio_data", transcript_delta="Hello")
    assert delta == {
        "audio": {
            "id": "audio_1",
            "data": base64.b64encode(b"audio_data").decode(),
            "transcript": "Hello",
        }
    }
    assert gen.generate_audio_delta(b"", "Hi") == {"audio": {"id": "audio_1", "transcript": "Hi"}}
    assert gen.generate_audio_delta(b"\x00", audio_id="x")["audio"] == {"id": "x", "data": "AA=="}
    auto = DeltaGenerator()
    assert auto.audio_id.startswith("audio_")
    assert auto.generate_audio_delta(b"a")["audio"]["id"] == auto.audio_id


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_tracker_document_figures() -> None:
    clock = FakeClock()
    tracker = ProgressTracker(total_tokens=100, clock=clock)
    assert tracker.time_to_first_chunk_ms() is None
    assert tracker.tokens_per_second() == 0.0
    clock.now += 0.15
    tracker.record_chunk(token_count=10)
    clock.now += 0.05
    assert tracker.progress_percentage() == 10.0
    assert tracker.tokens_per_second() == pytest.approx(50.0)
    assert tracker.time_to_first_chunk_ms() == pytest.approx(150.0)
    assert tracker.elapsed_ms() == pytest.approx(200.0)
    assert not tracker.is_complete()
    tracker.record_chunk(95)
    assert tracker.is_complete()
    assert tracker.progress_percentage() == 100.0
    assert tracker.chunks_received == 2


def test_progress_tracker_edges() -> None:
    assert ProgressTracker(0).progress_percentage() == 100.0
    assert ProgressTracker(0).is_complete()
    with pytest.raises(ValueError, match="total_tokens"):
        ProgressTracker(-1)
    with pytest.raises(ValueError, match="token_count"):
        ProgressTracker(1).record_chunk(-1)


def test_adaptive_faster_grows_slower_shrinks() -> None:
    chunker = AdaptiveChunker(initial_chunk_size=5, target_chunk_delay_ms=50.0)
    assert chunker.adjust_chunk_size(actual_delay_ms=40.0) == 6  # 5 * 50/40, rounded
    assert chunker.get_chunk_size() == 6
    assert chunker.adjust_chunk_size(100.0) == 3  # halved
    assert chunker.adjust_chunk_size(50.0) == 3  # on target: unchanged
    assert chunker.adjust_chunk_size(52.0) == 3  # inside the tolerance band
    assert chunker.adjust_chunk_size(44.0) == 4  # outside it: moves at least one step


def test_adaptive_stays_within_bounds() -> None:
    chunker = AdaptiveChunker(initial_chunk_size=5, min_chunk_size=2, max_chunk_size=8)
    for _ in range(20):
        chunker.adjust_chunk_size(0.0)
    assert chunker.get_chunk_size() == 8
    for _ in range(20):
        chunker.adjust_chunk_size(10_000.0)
    assert chunker.get_chunk_size() == 2


@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        ({"initial_chunk_size": 0}, "initial_chunk_size"),
        ({"min_chunk_size": 0}, "min_chunk_size"),
        ({"min_chunk_size": 9, "max_chunk_size": 4, "initial_chunk_size": 5}, "min_chunk_size"),
        ({"initial_chunk_size": 60}, "initial_chunk_size"),
        ({"target_chunk_delay_ms": 0}, "target_chunk_delay_ms"),
    ],
)
def test_adaptive_validates(kwargs: dict[str, object], arg: str) -> None:
    with pytest.raises(ValueError, match=arg):
        AdaptiveChunker(**kwargs)  # type: ignore[arg-type]


def test_adaptive_rejects_negative_delay() -> None:
    with pytest.raises(ValueError, match="actual_delay_ms"):
        AdaptiveChunker().adjust_chunk_size(-1.0)
