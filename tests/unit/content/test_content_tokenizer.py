"""The tokenizer: pieces carry leading whitespace, joining them restores the text exactly."""

from __future__ import annotations

import itertools
import random

import pytest

from fakeai.content.tokenizer import (
    IMAGE_PART_TOKENS,
    MAX_WORD_PIECE,
    MESSAGE_OVERHEAD_TOKENS,
    REPLY_PRIMING_TOKENS,
    count_prompt_tokens,
    count_tokens,
    piece_ends,
    split_pieces,
)


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("Hello world!", ["Hello", " world", "!"]),
        ("", []),
        ("   ", ["   "]),
        ("a  b\n\nc ", ["a", "  b", "\n\nc", " "]),
        ("x=12345", ["x", "=", "123", "45"]),
        ("snake_case", ["snake", "_", "case"]),
        ("internationalization", ["internat", "ionaliza", "tion"]),
        ("héllo wörld", ["héllo", " wörld"]),
    ],
)
def test_split_examples(text: str, pieces: list[str]) -> None:
    assert split_pieces(text) == pieces
    assert count_tokens(text) == len(pieces)


_ALPHABET = (
    [" ", "\t", "\n", "\r", "\u00a0", "\u3000", "\u2028", "\x0b", "\x0c"] * 4
    + list("abcXYZ019_.,!?-'\"{}[]:")
    + ["é", "ß", "日", "本", "²", "½", "\u0301", "\ufe0f", "😀", "\ud800", "\x00", "\u200b"]
)


def _random_text(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(0, 40)))
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 60)))


def test_join_restores_text_for_random_unicode_and_whitespace() -> None:
    rng = random.Random(1234)
    for _ in range(5000):
        text = _random_text(rng)
        assert "".join(split_pieces(text)) == text, repr(text)


def test_split_is_prefix_stable() -> None:
    """Cutting after k pieces and splitting again gives the same k pieces (builders cap texts
    this way)."""
    rng = random.Random(99)
    for _ in range(3000):
        pieces = split_pieces(_random_text(rng))
        k = rng.randint(0, len(pieces))
        assert split_pieces("".join(pieces[:k])) == pieces[:k]


def test_letter_runs_are_at_most_max_word_piece() -> None:
    for piece in split_pieces("a" * 50 + " " + "b" * 17):
        assert len(piece.strip()) <= MAX_WORD_PIECE


def test_only_the_last_piece_may_be_whitespace() -> None:
    pieces = split_pieces("one  two\n three \t")
    assert [p for p in pieces[:-1] if not p.strip()] == []
    assert pieces[-1] == " \t"


def test_prompt_tokens_of_strings_and_token_ids() -> None:
    assert count_prompt_tokens("Hello world!") == 3
    assert count_prompt_tokens(["Hello world!", "Hi"]) == 4
    assert count_prompt_tokens([1, 2, 3, 4]) == 4
    assert count_prompt_tokens([[1, 2], [3]]) == 3
    assert count_prompt_tokens([]) == 0
    assert count_prompt_tokens(None) == 0


def test_prompt_tokens_of_chat_messages() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Hello world!"},
                {"type": "image_url", "image_url": {"url": "data:..."}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    expected = (
        4 * MESSAGE_OVERHEAD_TOKENS
        + REPLY_PRIMING_TOKENS
        + 3  # "Be brief."
        + 3  # "Hello world!"
        + IMAGE_PART_TOKENS
        + 1  # "f"
        + 2  # "{}"
        + 1  # "sunny"
    )
    assert count_prompt_tokens(messages) == expected


def test_prompt_tokens_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="count_prompt_tokens"):
        count_prompt_tokens(3.5)
    with pytest.raises(TypeError, match="prompt items"):
        count_prompt_tokens(["a", 3.5])


@pytest.mark.parametrize("text", ["", "Hello world!", "naïve café, 12345 — ok  ", "x" * 70_000])
def test_piece_ends_are_the_running_lengths_of_the_pieces(text: str) -> None:
    pieces = split_pieces(text)
    ends = piece_ends(text)
    assert list(ends) == list(itertools.accumulate(map(len, pieces)))
    # Compact: two bytes per piece while offsets fit, four beyond.
    assert ends.itemsize == (2 if len(text) < 65536 else 4)
