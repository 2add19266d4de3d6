"""Echo mode: models named ``echo`` or ``echo-…`` answer with the request's own text.

For tests that need to know the answer in advance: a chat answer is the text of the last
``user`` message (text content parts joined), a completion is its prompt. The answer is cut by
``stop`` and the token cap like any other and streamed piece by piece at the model's pace.
Echo models never reason and never draw text from the seed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fakeai.latency_profiles.profiles import normalise

__all__ = ["is_echo_model", "last_user_text"]

_ECHO = re.compile(r"^echo(?:$|-)")


def is_echo_model(model: str) -> bool:
    """Is ``model`` an echo model (``echo``, ``echo-gpt-4o``, ``org/Echo-llama-3.1-8b``)?"""
    return _ECHO.match(normalise(model)) is not None


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def last_user_text(messages: Any) -> str:
    """The text of the last ``user`` message of a chat ``messages`` list ("" without one)."""
    items: list[Any] = messages if isinstance(messages, list) else []
    for message in reversed(items):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""
