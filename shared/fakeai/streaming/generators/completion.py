"""Streams a ``text_completion`` as OpenAI legacy Completions chunks.

Each chunk is ``{id, object: "text_completion", created, model, choices: [{text, index,
logprobs: null, finish_reason: null}]}`` with one token piece of ``text``; each choice ends with
a chunk whose ``text`` is ``""`` and whose ``finish_reason`` is set; with ``include_usage`` a
final chunk has ``choices: []`` and ``usage``. Choices interleave step by step as in chat.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from fakeai.content.tokenizer import split_pieces
from fakeai.streaming.base import StreamChunk, StreamContext, StreamingGenerator
from fakeai.streaming.generators._common import (
    ChoicePlan,
    Delta,
    Unit,
    emit_steps,
    group_units,
    make_pacer,
    stream_usage,
    to_dict,
)
from fakeai.timing import LatencyModel

__all__ = ["CompletionStreamingGenerator"]

CHUNK_TYPE = "text_completion"


def _merge(a: Delta, b: Delta) -> Delta | None:
    return {"text": a["text"] + b["text"]}


def _choice(index: int, delta: Delta) -> dict[str, Any]:
    return {"text": delta["text"], "index": index, "logprobs": None, "finish_reason": None}


class CompletionStreamingGenerator(StreamingGenerator):
    """Streams legacy text completions, one token piece per chunk (``chunk_tokens`` groups)."""

    def __init__(
        self, latency_manager: LatencyModel | None = None, *, chunk_tokens: int = 1
    ) -> None:
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be >= 1; got {chunk_tokens}")
        self.latency_manager = latency_manager
        self.chunk_tokens = chunk_tokens

    def plan_choices(self, full: Mapping[str, Any]) -> list[ChoicePlan]:
        """Every choice of ``full`` as steps of text pieces plus its finish chunk."""
        plans = []
        for pos, raw in enumerate(full.get("choices") or ()):
            choice = to_dict(raw)
            index = choice.get("index", pos)
            text = choice.get("text") or ""
            units: list[Unit] = [[({"text": p}, 1)] for p in split_pieces(text)]
            if not units:
                units = [[({"text": ""}, 0)]]
            reason = choice.get("finish_reason") or "stop"
            finish = {"text": "", "index": index, "logprobs": None, "finish_reason": reason}
            plans.append(
                ChoicePlan(index, group_units(units, self.chunk_tokens, _merge), finish, reason)
            )
        return plans

    async def generate(
        self, context: StreamContext, full_response: Any
    ) -> AsyncIterator[StreamChunk]:
        """Chunks of ``full_response`` (a ``text_completion``) at their token deadlines."""
        full = to_dict(full_response)
        choices = self.plan_choices(full)
        streamed = sum(c.tokens for c in choices)
        pacer = make_pacer(
            context, self.latency_manager, max((c.tokens for c in choices), default=0)
        )
        usage = (
            stream_usage(full, context.prompt_tokens, streamed) if context.include_usage else None
        )
        header = {
            "id": full.get("id") or context.stream_id,
            "object": CHUNK_TYPE,
            "created": context.created,
            "model": full.get("model") or context.model,
        }
        async for chunk in emit_steps(
            context, pacer, header, choices, _choice, CHUNK_TYPE, self.chunk_tokens, usage
        ):
            yield chunk
