"""Deterministic fake content: the tokenizer that defines a "token", and response builders.

No weights and no network: responses are English-looking prose from a seeded word bank, so a
request and a seed always give the same text, and usage agrees with the streamed pieces.
"""

from fakeai.content.audio import build_audio_chat_completion
from fakeai.content.responses import (
    InvalidRequestValue,
    build_chat_completion,
    build_text_completion,
    pieces_of,
)
from fakeai.content.tokenizer import count_prompt_tokens, count_tokens, split_pieces

__all__ = [
    "InvalidRequestValue",
    "build_audio_chat_completion",
    "build_chat_completion",
    "build_text_completion",
    "count_prompt_tokens",
    "count_tokens",
    "pieces_of",
    "split_pieces",
]
