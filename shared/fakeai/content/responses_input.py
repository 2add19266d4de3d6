"""The input side of a Responses API request: its items, and the chat request it amounts to.

A Responses request (https://platform.openai.com/docs/api-reference/responses/create) says the
same things as a chat request in other words; the fake model answers both with one builder
(:func:`fakeai.content.build_chat_completion`), so a Responses body is translated here:

- ``instructions`` -> a leading ``developer`` message; ``input`` (a string, or a list of
  items) -> messages: message items keep their role and text; a ``function_call`` item becomes
  an assistant message with that tool call; a ``function_call_output`` item becomes a ``tool``
  message (so "the last message is a tool result" reads the same on both APIs); other item
  types (reasoning, tool calls of hosted tools such as ``image_generation_call``) carry no
  text and are left out;
- flat function tools ``{"type": "function", "name", "parameters"}`` -> chat's
  ``{"type": "function", "function": {...}}``; hosted tools (web search, ...) are ignored
  here (the image generation tool is :mod:`fakeai.content.image_tool`'s);
- ``tool_choice`` ``{"type": "function", "name"}`` -> chat's ``{"type": "function",
  "function": {"name"}}``; a hosted-tool choice counts as ``auto``;
- ``text.format`` -> ``response_format``; ``max_output_tokens`` -> ``max_completion_tokens``;
  ``temperature``, ``top_p``, ``user`` as they are, and vLLM's ``ignore_eos`` (an extension:
  exactly ``max_output_tokens`` tokens, as ``fakeai-streams bench`` asks for on every API).

Input items as ``GET /v1/responses/{id}/input_items`` lists them (:func:`input_items`) carry an
id each, derived from the response id and the item's position, so they are the same on every
read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["chat_body", "input_items", "item_id", "text_of"]

_PASSED_ON = ("temperature", "top_p", "user", "ignore_eos")
_ID_PREFIXES = {"function_call": "fc", "function_call_output": "fco", "image_generation_call": "ig"}
"""The id prefix of an input item without one, by type, as OpenAI names them."""


def item_id(prefix: str, response_id: str, index: int) -> str:
    """A stable item id: ``<prefix>_`` + 48 hex digits from the response id and a position."""
    digest = hashlib.blake2b(f"{response_id}:{index}".encode(), digest_size=24).hexdigest()
    return f"{prefix}_{digest}"


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text of its text parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, Sequence):
        return ""
    parts = [p.get("text") for p in content if isinstance(p, Mapping)]
    return "".join(p for p in parts if isinstance(p, str))


def _as_items(raw: Any) -> list[Mapping[str, Any]]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    return [item for item in raw if isinstance(item, Mapping)]


def input_items(body: Mapping[str, Any], response_id: str) -> list[dict[str, Any]]:
    """The request's ``input`` as stored items: each with an ``id``; message contents as
    parts (``input_text`` for user, system and developer text, ``output_text`` for the
    assistant's), as OpenAI lists them."""
    out: list[dict[str, Any]] = []
    for index, item in enumerate(_as_items(body.get("input"))):
        kind = item.get("type", "message")
        if kind == "message":
            role = str(item.get("role", "user"))
            content = item.get("content")
            if isinstance(content, str):
                part = "output_text" if role == "assistant" else "input_text"
                content = [{"type": part, "text": content}]
            stored: dict[str, Any] = {
                "id": item.get("id") or item_id("msg", response_id, index),
                "type": "message",
                "role": role,
                "content": content if isinstance(content, list) else [],
                "status": "completed",
            }
        else:
            prefix = _ID_PREFIXES.get(kind, "item")
            stored = {"id": item.get("id") or item_id(prefix, response_id, index), **item}
        out.append(stored)
    return out


def _messages(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(
                {"role": str(item.get("role", "user")), "content": text_of(item.get("content"))}
            )
        elif kind == "function_call":
            call = {
                "id": str(item.get("call_id", "")),
                "type": "function",
                "function": {
                    "name": str(item.get("name", "")),
                    "arguments": str(item.get("arguments", "")),
                },
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)  # parallel calls of one turn
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": str(item.get("call_id", "")),
                    "content": output if isinstance(output, str) else text_of(output),
                }
            )
    return messages


def _tools(tools: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, Mapping) and tool.get("type") == "function":
            function = {k: tool[k] for k in ("name", "description", "parameters") if k in tool}
            out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, Mapping):
        if choice.get("type") == "function":
            return {"type": "function", "function": {"name": choice.get("name")}}
        return "auto"  # a hosted tool, or allowed_tools: the model may call what it likes
    return choice


def _response_format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, Mapping) else None
    if not isinstance(fmt, Mapping):
        return None
    if fmt.get("type") == "json_schema":
        spec = {k: fmt[k] for k in ("name", "schema", "strict") if k in fmt}
        return {"type": "json_schema", "json_schema": spec}
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    return None


def chat_body(body: Mapping[str, Any], history: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The chat request ``body`` amounts to (module docstring); ``history`` holds the items
    of earlier turns (``previous_response_id``), before this request's input."""
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "developer", "content": instructions})
    messages += _messages([*history, *_as_items(body.get("input"))])
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if body.get("max_output_tokens") is not None:
        chat["max_completion_tokens"] = body["max_output_tokens"]
    tools = _tools(body.get("tools"))
    if tools:
        chat["tools"] = tools
        if body.get("tool_choice") is not None:
            chat["tool_choice"] = _tool_choice(body["tool_choice"])
    response_format = _response_format(body.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    for name in _PASSED_ON:
        if body.get(name) is not None:
            chat[name] = body[name]
    return chat
