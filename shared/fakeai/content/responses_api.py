"""Deterministic fake Responses API output: the ``response`` object and its stream of events.

The text, tool calls and usage come from the chat builder (:func:`fakeai.content.
build_chat_completion` on the chat request a Responses body amounts to,
:func:`fakeai.content.responses_input.chat_body`), so both APIs answer alike: the same seeding,
token pieces, ``max_output_tokens`` cap, JSON that fits ``text.format``, and the agent-loop
rule (a tool result is answered in text unless ``tool_choice`` forces a call).

The events are those OpenAI streams (https://platform.openai.com/docs/api-reference/
responses-streaming), in its order, numbered by ``sequence_number`` from 0::

    response.created, response.in_progress                 (the response, in_progress)
    per output item:  response.output_item.added
      reasoning:      reasoning_summary_part.added, reasoning_summary_text.delta..,
                      reasoning_summary_text.done, reasoning_summary_part.done
      message:        content_part.added, output_text.delta.., output_text.done,
                      content_part.done
      function_call:  function_call_arguments.delta.., function_call_arguments.done
      image_generation_call:  image_generation_call.in_progress, .generating,
                      .partial_image.., .completed       (:mod:`fakeai.content.image_tool`)
                      response.output_item.done
    response.completed, or response.incomplete (max_output_tokens reached)

Each event comes with the output tokens it stands for (:attr:`BuiltResponse.tokens`): one per
delta (one token piece each), the hidden reasoning tokens on the reasoning item's ``done`` when
no summary is streamed, 0 for the rest. A producer paces event k by those counts: structural
events are due with the token before them (the first ones at acceptance), a delta with its own.

Reasoning (models whose latency profile says ``reasoning``, unless ``reasoning.effort`` is
``"none"``): a reasoning item comes first, its tokens drawn by effort (:data:`REASONING_TOKENS`)
and counted in ``output_tokens_details.reasoning_tokens`` and in ``max_output_tokens``; its
summary text is streamed only when ``reasoning.summary`` asks for one.

Output items, in order: the reasoning item, then an image generation call (when the turn uses
the ``image_generation`` tool: :func:`fakeai.content.image_tool.image_tool`; such a turn calls
no function), the function calls, then the message.

Every id is derived from the response id (items) or the seed (text), so a response built again
(a producer taking a stream over) is the same, event for event.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from fakeai.content.built import BuiltResponse, EventLog
from fakeai.content.image_tool import build_image_call, image_tool
from fakeai.content.prose import prose
from fakeai.content.responses import build_chat_completion
from fakeai.content.responses_input import chat_body, item_id
from fakeai.content.tokenizer import split_pieces

__all__ = [
    "REASONING_TOKENS",
    "BuiltResponse",
    "build_response",
    "response_object",
    "stamp_completed",
]

REASONING_TOKENS = {"minimal": 8, "low": 24, "medium": 64, "high": 160}
"""Reasoning tokens by ``reasoning.effort`` (default ``medium``), before the seeded jitter."""

_SUMMARIES = frozenset({"auto", "concise", "detailed"})


def response_object(
    body: Mapping[str, Any], *, response_id: str, created_at: int, model: str
) -> dict[str, Any]:
    """The ``response`` object as ``response.created`` shows it: in progress, no output yet."""
    reasoning = body.get("reasoning")
    text = body.get("text")
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "completed_at": None,
        "background": bool(body.get("background")),
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": dict(body.get("metadata") or {}),
        "model": model,
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {
            "effort": reasoning.get("effort") if isinstance(reasoning, Mapping) else None,
            "summary": reasoning.get("summary") if isinstance(reasoning, Mapping) else None,
        },
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": dict(text) if isinstance(text, Mapping) else {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": list(body.get("tools") or []),
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": None,
        "user": body.get("user"),
    }


def stamp_completed(event: dict[str, Any], at: float) -> dict[str, Any]:
    """``event`` with its response's ``completed_at`` set to ``at`` (Unix s, whole seconds as
    ``created_at``) when it is ``response.completed``; any other event as it is.

    OpenAI sets ``completed_at`` on a completed response only. The time is the event's own
    (when the producer writes it), so it is stamped then, not when the events are built.
    """
    response = event.get("response")
    if event.get("type") != "response.completed" or not isinstance(response, dict):
        return event
    return {**event, "response": {**response, "completed_at": int(at)}}


def _reasoning(
    body: Mapping[str, Any], rid: str, seed: int | None, cap: int | None
) -> tuple[str, int, bool]:
    """(reasoning text, its tokens, whether its summary is streamed) of a reasoning model."""
    options = body.get("reasoning")
    options = options if isinstance(options, Mapping) else {}
    base = REASONING_TOKENS.get(str(options.get("effort") or "medium"), REASONING_TOKENS["medium"])
    rng = random.Random(f"{seed if seed is not None else rid}:reasoning")
    tokens = rng.randint(base, base * 2)
    if cap is not None:
        tokens = min(tokens, max(1, cap // 2))
    pieces = split_pieces(prose(rng, tokens))[:tokens]
    return "".join(pieces), len(pieces), options.get("summary") in _SUMMARIES


def _message_events(ev: EventLog, item: dict[str, Any], index: int, text: str) -> None:
    iid = item["id"]
    part: dict[str, Any] = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
    where = {"item_id": iid, "output_index": index, "content_index": 0}
    ev.add("response.content_part.added", **where, part=part)
    for piece in split_pieces(text):
        ev.add("response.output_text.delta", 1, **where, delta=piece, logprobs=[])
    ev.add("response.output_text.done", **where, text=text, logprobs=[])
    ev.add("response.content_part.done", **where, part={**part, "text": text})


def _reasoning_events(ev: EventLog, item: dict[str, Any], index: int, text: str) -> None:
    where = {"item_id": item["id"], "output_index": index, "summary_index": 0}
    part = {"type": "summary_text", "text": ""}
    ev.add("response.reasoning_summary_part.added", **where, part=part)
    for piece in split_pieces(text):
        ev.add("response.reasoning_summary_text.delta", 1, **where, delta=piece)
    ev.add("response.reasoning_summary_text.done", **where, text=text)
    ev.add("response.reasoning_summary_part.done", **where, part={**part, "text": text})


def build_response(
    body: Mapping[str, Any],
    *,
    response_id: str,
    created_at: int,
    seed: int | None,
    model: str,
    reasoning_model: bool = False,
    history: Sequence[Mapping[str, Any]] = (),
) -> BuiltResponse:
    """The response to a Responses request ``body`` and its events (module docstring).

    ``history`` holds the items of earlier turns (``previous_response_id``). Raises
    :class:`fakeai.content.InvalidRequestValue` for a value the chat builder refuses.
    """
    chat = chat_body(body, history)
    tool = image_tool(body, chat["messages"])
    if tool is not None and "tools" in chat:
        chat["tool_choice"] = "none"  # a turn that draws calls no function
    cap = chat.get("max_completion_tokens")
    cap = cap if isinstance(cap, int) and not isinstance(cap, bool) else None
    options = body.get("reasoning")
    thinking = reasoning_model and not (
        isinstance(options, Mapping) and options.get("effort") == "none"
    )
    r_text, r_tokens, summarized = (
        _reasoning(body, response_id, seed, cap) if thinking else ("", 0, False)
    )
    if cap is not None and r_tokens:
        chat["max_completion_tokens"] = max(1, cap - r_tokens)
    completion = build_chat_completion(  # the reasoning is ours (above), not the chat builder's
        chat, completion_id=response_id, created=created_at, seed=seed, model=model, reasoning=False
    )
    choice = completion["choices"][0]
    message = choice["message"]
    incomplete = choice["finish_reason"] == "length"
    status = "incomplete" if incomplete else "completed"

    ev = EventLog()
    start = response_object(body, response_id=response_id, created_at=created_at, model=model)
    ev.add("response.created", response=start)
    ev.add("response.in_progress", response=start)
    output: list[dict[str, Any]] = []

    def open_item(item: dict[str, Any]) -> int:
        index = len(output)
        ev.add("response.output_item.added", output_index=index, item=item)
        return index

    def close_item(index: int, item: dict[str, Any], tokens: int = 0) -> None:
        output.append(item)
        ev.add("response.output_item.done", tokens, output_index=index, item=item)

    if thinking:
        rid = item_id("rs", response_id, 0)
        index = open_item({"id": rid, "type": "reasoning", "summary": []})
        summary = [{"type": "summary_text", "text": r_text}] if summarized else []
        if summarized:
            _reasoning_events(ev, {"id": rid}, index, r_text)
        close_item(index, {"id": rid, "type": "reasoning", "summary": summary},
                   0 if summarized else r_tokens)  # fmt: skip
    image = None
    if tool is not None:
        image = build_image_call(tool, call_id=item_id("ig", response_id, len(output) + 1),
                                 messages=chat["messages"], seed=seed)  # fmt: skip
        index = open_item(image.added)
        image.emit(ev, index)
        close_item(index, image.item)
    for call in message.get("tool_calls") or ():
        function = call["function"]
        fid = item_id("fc", response_id, len(output) + 1)
        item = {"id": fid, "type": "function_call", "status": "in_progress", "arguments": "",
                "call_id": call["id"], "name": function["name"]}  # fmt: skip
        index = open_item(item)
        args = function["arguments"]
        for piece in split_pieces(args):
            ev.add("response.function_call_arguments.delta", 1, item_id=fid, output_index=index,
                   delta=piece)  # fmt: skip
        ev.add("response.function_call_arguments.done", item_id=fid, output_index=index,
               name=function["name"], arguments=args)  # fmt: skip
        close_item(index, {**item, "status": status, "arguments": args})
    if message.get("content") is not None:
        text = message["content"]
        mid = item_id("msg", response_id, len(output) + 1)
        item = {"id": mid, "type": "message", "status": "in_progress", "content": [],
                "role": "assistant"}  # fmt: skip
        index = open_item(item)
        _message_events(ev, item, index, text)
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
        close_item(index, {**item, "status": status, "content": [part]})

    usage = completion["usage"]
    output_tokens = int(usage["completion_tokens"]) + r_tokens
    final = {
        **start,
        "status": status,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "output": output,
        "usage": {
            "input_tokens": usage["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": r_tokens},
            "total_tokens": usage["prompt_tokens"] + output_tokens,
        },
    }
    if image is not None:
        final["tool_usage"] = {"image_gen": image.usage, "web_search": {"num_requests": 0}}
    ev.add("response.incomplete" if incomplete else "response.completed", response=final)
    return BuiltResponse(final, ev.events, ev.tokens)
