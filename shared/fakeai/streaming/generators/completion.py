"""Streams a ``text_completion`` as OpenAI legacy Completions chunks.

Each chunk is ``{id, object: "text_completion", created, model, choices: [{text, index,
logprobs, finish_reason: null}]}`` with one token piece of ``text``; ``logprobs`` is null
unless the choice has logprobs, then the legacy columns of the chunk's pieces (``tokens``,
``token_logprobs``, ``top_logprobs``, ``text_offset``). Each choice ends with
a chunk whose ``text`` is ``""`` and whose ``finish_reason`` is set; with ``include_usage`` a
final chunk has ``choices: []`` and ``usage``. Choices interleave step by step as in chat.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fakeai.streaming.base import StreamContext
from fakeai.streaming.generators._common import (
    ChoicePlan,
    ChoiceStreamGenerator,
    Delta,
    LazySteps,
    Steps,
    TextUnits,
)
from fakeai.streaming.generators._logprobs import (
    LOGPROBS,
    legacy_piece_logprobs,
    merging_logprobs,
)
from fakeai.streaming.generators._response import CHOICE, require, to_dict

__all__ = ["CompletionStreamingGenerator"]

CHUNK_TYPE = "text_completion"


def _text(piece: str) -> Delta:
    return {"text": piece}


def _merge_text(a: Delta, b: Delta) -> Delta | None:
    return {"text": a["text"] + b["text"]}


_merge = merging_logprobs(_merge_text)


class CompletionStreamingGenerator(ChoiceStreamGenerator):
    """Streams legacy text completions, one token piece per chunk (``chunk_tokens`` groups)."""

    chunk_type = CHUNK_TYPE

    def header(self, full: Mapping[str, Any], context: StreamContext) -> dict[str, Any]:
        return {
            "id": full.get("id") or context.stream_id,
            "object": CHUNK_TYPE,
            "created": context.created,
            "model": full.get("model") or context.model,
        }

    @staticmethod
    def choice(index: int, delta: Delta) -> dict[str, Any]:
        logprobs = delta.get(LOGPROBS)
        return {"text": delta["text"], "index": index, "logprobs": logprobs, "finish_reason": None}

    def plan_choices(self, full: Mapping[str, Any]) -> list[ChoicePlan]:
        """Every choice of ``full`` as steps of text pieces plus its finish chunk."""
        plans = []
        for pos, raw in enumerate(full.get("choices") or ()):
            where = f"full_response.choices[{pos}]"
            choice = to_dict(raw, CHOICE, where)
            require(choice, "text", where, raw)
            index = choice.get("index", pos)
            text = choice.get("text") or ""
            logprobs = legacy_piece_logprobs(choice.get("logprobs"))
            units: Steps = TextUnits(text, _text, None, logprobs) if text else [[({"text": ""}, 0)]]
            reason = choice.get("finish_reason") or "stop"
            finish = {"text": "", "index": index, "logprobs": None, "finish_reason": reason}
            plans.append(
                ChoicePlan(index, LazySteps(units, self.chunk_tokens, _merge), finish, reason)
            )
        return plans
