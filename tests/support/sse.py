"""Reading OpenAI chat streams in tests (httpx-sse events)."""

from __future__ import annotations

import json

from httpx_sse import ServerSentEvent

__all__ = ["chat_text", "timing"]


def chat_text(events: list[ServerSentEvent]) -> str:
    """The concatenated ``delta.content`` of a chat stream's events."""
    out = []
    for e in events:
        if e.data and e.data != "[DONE]":
            for ch in json.loads(e.data).get("choices", []):
                out.append(ch.get("delta", {}).get("content") or "")
    return "".join(out)


def timing(ttft_ms: int, itl_ms: int) -> dict[str, str]:
    """The per-request timing override headers."""
    return {"X-FakeAI-TTFT-Ms": str(ttft_ms), "X-FakeAI-ITL-Ms": str(itl_ms)}
