"""Tool turns of the chat builder: which function a turn calls, and a call's arguments.

With tools offered, a turn calls the first function, except after a tool result (the last
message has role ``tool``), which is answered in text unless ``tool_choice`` forces a call.
Arguments are a JSON value that fits the function's ``parameters`` schema, seeded, cut to the
token cap like any text.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from typing import Any

from fakeai.content.prose import value_for_schema
from fakeai.content.request_fields import InvalidRequestValue
from fakeai.content.tokenizer import split_pieces

__all__ = ["pick_tool", "tool_call"]


def _answers_tool_result(body: Mapping[str, Any]) -> bool:
    """The conversation ends with a tool result: the last message has role ``tool``."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return False
    last = messages[-1]
    return isinstance(last, Mapping) and last.get("role") == "tool"


def pick_tool(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The function a tool turn calls, or None when this turn answers in text.

    A turn that follows a tool result answers in text unless the request forces a call
    (``tool_choice`` ``required`` or naming a function): that is how agent loops end (the
    OpenAI Agents SDK, openai-node ``runTools`` and LangChain agents call tools until the
    model answers in text).
    """
    tools = body.get("tools")
    choice = body.get("tool_choice")
    functions: list[Mapping[str, Any]] = [
        t["function"]
        for t in (tools if isinstance(tools, list) else ())
        if isinstance(t, Mapping) and isinstance(t.get("function"), Mapping)
    ]
    if choice == "required" and not functions:
        raise InvalidRequestValue("tool_choice", "tool_choice 'required' needs at least one tool")
    if not functions or choice == "none":
        return None
    if choice is None or choice == "auto":
        return None if _answers_tool_result(body) else functions[0]
    if choice == "required":
        return functions[0]
    if isinstance(choice, Mapping):
        name = (choice.get("function") or {}).get("name")
        for f in functions:
            if f.get("name") == name:
                return f
        names = ", ".join(repr(f.get("name")) for f in functions)
        raise InvalidRequestValue(
            "tool_choice", f"tool_choice names function {name!r}, not among the tools ({names})"
        )
    raise InvalidRequestValue(
        "tool_choice",
        f"tool_choice must be 'none', 'auto', 'required' or a function object; got {choice!r}",
    )


def tool_call(
    rng: random.Random, function: Mapping[str, Any], max_tokens: int | None
) -> tuple[dict[str, Any], int, str]:
    """A call of ``function`` with seeded arguments, cut to ``max_tokens`` pieces: (the call,
    its argument tokens, its finish reason ``tool_calls`` or ``length``)."""
    params = function.get("parameters")
    if not isinstance(params, Mapping) or params.get("type", "object") != "object":
        params = {"type": "object", "properties": {}}
    arguments = json.dumps(
        value_for_schema({**params, "type": "object"}, rng),
        separators=(",", ":"),
        ensure_ascii=False,
    )
    pieces = split_pieces(arguments)
    finish = "tool_calls"
    if max_tokens is not None and len(pieces) > max_tokens:
        pieces = pieces[:max_tokens]
        arguments = "".join(pieces)
        finish = "length"
    call_id = "call_" + "".join(
        rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", k=24)
    )
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": str(function.get("name", "")), "arguments": arguments},
    }
    return call, len(pieces), finish
