"""Streams a ``chat.completion`` as OpenAI ``chat.completion.chunk`` objects.

Wire shape (OpenAI Chat Completions streaming, as OpenAI's API reference and SDKs read it):

- every chunk has the response's ``id``, ``object``, ``created`` (the context's), ``model``,
  ``system_fingerprint`` and one choice ``{index, delta, logprobs, finish_reason}``;
  ``logprobs`` is null unless the choice has logprobs: then each content chunk carries the
  entries of its pieces (``{"content": [...], "refusal": null}``);
- a reasoning model's ``reasoning_content`` streams first, one piece per chunk
  (``delta.reasoning_content``, vLLM's and DeepSeek's field), then the answer;
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

from collections.abc import Iterator, Mapping
from typing import Any

from fakeai.streaming.base import StreamContext
from fakeai.streaming.generators._common import (
    ChoicePlan,
    ChoiceStreamGenerator,
    Delta,
    LazySteps,
    Steps,
    TextUnits,
    Unit,
)
from fakeai.streaming.generators._logprobs import (
    PieceLogprobs,
    chat_piece_logprobs,
    merging_logprobs,
    split_logprobs,
)
from fakeai.streaming.generators._response import (
    CHOICE,
    FUNCTION,
    MESSAGE,
    TOOL_CALL,
    require,
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


def _content(text: str) -> Delta:
    return {"content": text}


def _refusal(text: str) -> Delta:
    return {"refusal": text}


def _reasoning(text: str) -> Delta:
    return {"reasoning_content": text}


class MessageUnits:
    """An assistant message's units, made when iterated (see :func:`message_units`).

    Holds the message's text and tool-call arguments plus 4 bytes per token piece; the
    unit count, tokens and deltas are known up front without building any unit. ``logprobs``
    gives each content piece its logprobs (:data:`~._logprobs.LOGPROBS`).
    """

    __slots__ = ("_calls", "_text", "_thinking", "deltas", "tokens", "units")

    def __init__(self, message: Mapping[str, Any], logprobs: PieceLogprobs | None = None) -> None:
        content, refusal = message.get("content"), message.get("refusal")
        thinking = message.get("reasoning_content")
        self._thinking: TextUnits | None = None
        role: Delta | None = _ROLE
        if isinstance(thinking, str) and thinking:
            self._thinking = TextUnits(thinking, _reasoning, _ROLE)
            role = None
        self._text: TextUnits | None = None
        if isinstance(content, str) and content:
            self._text = TextUnits(content, _content, role, logprobs)
        elif isinstance(refusal, str) and refusal:
            self._text = TextUnits(refusal, _refusal, role)
        self._calls: list[tuple[int, dict[str, Any], TextUnits]] = []
        for i, raw in enumerate(message.get("tool_calls") or ()):
            call = to_dict(raw, TOOL_CALL, f"message.tool_calls[{i}]")
            function = to_dict(call.get("function") or {}, FUNCTION, "tool_call.function")
            head = {
                "index": i,
                "id": call.get("id"),
                "type": call.get("type", "function"),
                "name": function.get("name", ""),
            }
            args = TextUnits(function.get("arguments") or "", _content)  # pieces only
            self._calls.append((i, head, args))
        text = len(self._text) if self._text is not None else 0
        text += len(self._thinking) if self._thinking is not None else 0
        pieces = [len(args) for _, _, args in self._calls]
        self.tokens = text + sum(pieces)
        # A call streams its header with its first fragment (or alone when it has none).
        self.units = max(1, text + sum(max(1, p) for p in pieces))
        self.deltas = max(1, text + sum(p + 1 for p in pieces))

    def __len__(self) -> int:
        return self.units

    def __iter__(self) -> Iterator[Unit]:
        first = self._text is None and self._thinking is None
        if self._thinking is not None:
            yield from self._thinking
        if self._text is not None:
            yield from self._text
        for i, head, args in self._calls:
            header: Delta = {
                "tool_calls": [
                    {
                        "index": i,
                        "id": head["id"],
                        "type": head["type"],
                        "function": {"name": head["name"], "arguments": ""},
                    }
                ]
            }
            if first:
                header = {**_ROLE, **header}
                first = False
            if not args:
                yield [(header, 0)]
                continue
            lead = True
            for piece in args.pieces():
                frag: Delta = {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}
                if lead:
                    yield [(header, 0), (frag, 1)]
                    lead = False
                else:
                    yield [(frag, 1)]
        if first:
            yield [({"role": "assistant", "content": ""}, 0)]


_ROLE: Delta = {"role": "assistant"}


def message_units(message: Mapping[str, Any]) -> list[Unit]:
    """One unit per token piece of an assistant message: content (or refusal) pieces first,
    then tool calls; the first delta carries the role. An empty message gives one role delta
    with ``content: ""`` and no tokens. (:class:`MessageUnits` makes the same units on demand.)
    """
    return list(MessageUnits(message))


def _merge_deltas(a: Delta, b: Delta) -> Delta | None:
    if "reasoning_content" in b and len(b) == 1 and isinstance(a.get("reasoning_content"), str):
        return {**a, "reasoning_content": a["reasoning_content"] + b["reasoning_content"]}
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


merge_chat_deltas = merging_logprobs(_merge_deltas)
"""``a`` and ``b`` as one delta when they continue the same text (content, refusal or
reasoning) or the same tool call's arguments (for multi-token chunks), their logprobs joined;
None when they must stay separate chunks."""


class ChatStreamingGenerator(ChoiceStreamGenerator):
    """Streams OpenAI chat completions, one token piece per chunk (``chunk_tokens`` groups)."""

    chunk_type = CHUNK_TYPE

    def header(self, full: Mapping[str, Any], context: StreamContext) -> dict[str, Any]:
        return chat_header(full, context)

    @staticmethod
    def choice(index: int, delta: Delta) -> dict[str, Any]:
        delta, logprobs = split_logprobs(delta)
        return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": None}

    @staticmethod
    def units(message: Mapping[str, Any]) -> Steps:
        """A message's token units (content pieces or tool-call fragments), made on demand."""
        return MessageUnits(message)

    @staticmethod
    def merge(a: Delta, b: Delta) -> Delta | None:
        """Two deltas as one, when ``chunk_tokens`` groups them (None: keep apart)."""
        return merge_chat_deltas(a, b)

    def plan_choices(self, full: Mapping[str, Any]) -> list[ChoicePlan]:
        """Every choice of ``full`` as steps of deltas plus its finish chunk."""
        plans = []
        for pos, raw in enumerate(full.get("choices") or ()):
            where = f"full_response.choices[{pos}]"
            choice = to_dict(raw, CHOICE, where)
            require(choice, "message", where, raw)
            index = choice.get("index", pos)
            message = to_dict(choice["message"] or {}, MESSAGE, f"{where}.message")
            reason = choice.get("finish_reason") or "stop"
            logprobs = chat_piece_logprobs(choice.get("logprobs"))
            units = self.units(message)
            if logprobs is not None and isinstance(units, MessageUnits):
                units = MessageUnits(message, logprobs)
            steps = LazySteps(units, self.chunk_tokens, self.merge)
            finish = {"index": index, "delta": {}, "logprobs": None, "finish_reason": reason}
            plans.append(ChoicePlan(index, steps, finish, reason))
        return plans
