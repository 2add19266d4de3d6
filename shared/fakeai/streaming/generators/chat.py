"""Streams a ``chat.completion`` as OpenAI ``chat.completion.chunk`` objects.

Wire shape (OpenAI Chat Completions streaming; checklist in the project's notes, section 8):

- every chunk has the response's ``id``, ``object``, ``created`` (the context's), ``model``,
  ``system_fingerprint`` and one choice ``{index, delta, logprobs: null, finish_reason}``;
- the role travels with the first token, at the TTFT deadline, never before it: clients differ
  in which chunk starts TTFT (``vllm bench`` takes any chunk with choices, AIPerf the first with
  content), and only this keeps them in agreement (vllm PR #3768, sglang PR #29251);
- one token piece per chunk by default (``usage.completion_tokens`` = chunks with tokens);
- tool calls: a header delta ``{index, id, type, function: {name, arguments: ""}}``, then one
  argument fragment per token; ``finish_reason: "tool_calls"``;
- ``n > 1``: one choice per chunk, step ``k`` of every choice at the same deadline, each choice
  with its own role and finish chunk;
- ``include_usage``: one extra final chunk with ``choices: []`` and ``usage``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fakeai.content.tokenizer import split_pieces
from fakeai.streaming.base import StreamContext
from fakeai.streaming.generators._common import (
    ChoicePlan,
    ChoiceStreamGenerator,
    Delta,
    Unit,
    group_units,
    to_dict,
)

__all__ = ["ChatStreamingGenerator", "chat_header", "merge_chat_deltas"]

CHUNK_TYPE = "chat.completion.chunk"


def chat_header(full: Mapping[str, Any], context: StreamContext) -> dict[str, Any]:
    """The fields every chunk of the stream repeats, in OpenAI's order."""
    return {
        "id": full.get("id") or context.stream_id,
        "object": CHUNK_TYPE,
        "created": context.created,
        "model": full.get("model") or context.model,
        "system_fingerprint": full.get("system_fingerprint"),
    }


def _tool_units(tool_calls: list[Any]) -> list[Unit]:
    units: list[Unit] = []
    for i, call in enumerate(tool_calls):
        call = to_dict(call)
        function = call.get("function") or {}
        header: Delta = {
            "tool_calls": [
                {
                    "index": i,
                    "id": call.get("id"),
                    "type": call.get("type", "function"),
                    "function": {"name": function.get("name", ""), "arguments": ""},
                }
            ]
        }
        pieces = split_pieces(function.get("arguments") or "")
        if not pieces:
            units.append([(header, 0)])
            continue
        frags: list[Unit] = [
            [({"tool_calls": [{"index": i, "function": {"arguments": p}}]}, 1)] for p in pieces
        ]
        frags[0].insert(0, (header, 0))
        units.extend(frags)
    return units


def message_units(message: Mapping[str, Any]) -> list[Unit]:
    """One unit per token piece of an assistant message: content (or refusal) pieces first,
    then tool calls; the first delta carries the role. An empty message gives one role delta
    with ``content: ""`` and no tokens."""
    units: list[Unit] = []
    content = message.get("content")
    if isinstance(content, str) and content:
        units.extend([({"content": p}, 1)] for p in split_pieces(content))
    elif isinstance(message.get("refusal"), str) and message["refusal"]:
        units.extend([({"refusal": p}, 1)] for p in split_pieces(message["refusal"]))
    units.extend(_tool_units(list(message.get("tool_calls") or ())))
    if not units:
        return [[({"role": "assistant", "content": ""}, 0)]]
    first, tokens = units[0][0]
    units[0][0] = ({"role": "assistant", **first}, tokens)
    return units


def merge_chat_deltas(a: Delta, b: Delta) -> Delta | None:
    """``a`` and ``b`` as one delta when they continue the same text or the same tool call's
    arguments (for multi-token chunks); None when they must stay separate chunks."""
    if (
        "content" in b
        and len(b) == 1
        and isinstance(a.get("content"), str)
        and "tool_calls" not in a
    ):
        return {**a, "content": a["content"] + b["content"]}
    if "refusal" in b and len(b) == 1 and isinstance(a.get("refusal"), str):
        return {**a, "refusal": a["refusal"] + b["refusal"]}
    ta, tb = a.get("tool_calls"), b.get("tool_calls")
    if not (isinstance(ta, list) and ta and isinstance(tb, list) and tb and len(b) == 1):
        return None
    ca, cb = ta[0], tb[0]
    if ca["index"] == cb["index"] and "id" not in ca and "id" not in cb:
        args = ca["function"]["arguments"] + cb["function"]["arguments"]
        return {**a, "tool_calls": [{"index": ca["index"], "function": {"arguments": args}}]}
    return None


class ChatStreamingGenerator(ChoiceStreamGenerator):
    """Streams OpenAI chat completions, one token piece per chunk (``chunk_tokens`` groups)."""

    chunk_type = CHUNK_TYPE

    def header(self, full: Mapping[str, Any], context: StreamContext) -> dict[str, Any]:
        return chat_header(full, context)

    @staticmethod
    def choice(index: int, delta: Delta) -> dict[str, Any]:
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}

    @staticmethod
    def units(message: Mapping[str, Any]) -> list[Unit]:
        """A message's token units (content pieces or tool-call fragments)."""
        return message_units(message)

    @staticmethod
    def merge(a: Delta, b: Delta) -> Delta | None:
        """Two deltas as one, when ``chunk_tokens`` groups them (None: keep apart)."""
        return merge_chat_deltas(a, b)

    def plan_choices(self, full: Mapping[str, Any]) -> list[ChoicePlan]:
        """Every choice of ``full`` as steps of deltas plus its finish chunk."""
        plans = []
        for pos, raw in enumerate(full.get("choices") or ()):
            choice = to_dict(raw)
            index = choice.get("index", pos)
            message = to_dict(choice.get("message") or {})
            reason = choice.get("finish_reason") or "stop"
            steps = group_units(self.units(message), self.chunk_tokens, self.merge)
            finish = {"index": index, "delta": {}, "logprobs": None, "finish_reason": reason}
            plans.append(ChoicePlan(index, steps, finish, reason))
        return plans
