"""The Responses API's image generation tool: whether a turn uses it, and its call's events.

A request offers the tool as ``{"type": "image_generation", "partial_images", "size",
"quality", "background", "output_format"}`` in ``tools``
(https://platform.openai.com/docs/guides/tools-image-generation), with the values the images
endpoint serves (:func:`fakeai.content.images.image_options`). Whether a turn uses it
(:func:`image_tool`) is decided by ``tool_choice``, deterministically:

- ``{"type": "image_generation"}``: it does;
- ``"required"``: it does when no function tool is offered (else a function is called, as on
  chat);
- ``"auto"`` (the default), or a choice of hosted tools or ``allowed_tools``: it does when the
  last message is the user's and has one of :data:`IMAGE_WORDS` in it, as a word, in any case
  ("Draw a lighthouse", "an image of the sea"; not "imagine");
- ``"none"`` or a function choice: it does not.

A turn that uses the tool calls no function: its image call comes first, then the message
text of the chat builder (:mod:`.responses_api`). The call's events, as OpenAI streams them::

    response.output_item.added                      item ig_…, status in_progress, no result
    response.image_generation_call.in_progress
    response.image_generation_call.generating
    response.image_generation_call.partial_image    x partial_images (partial_image_index,
                                                    partial_image_b64, size, quality, ...)
    response.image_generation_call.completed
    response.output_item.done                       status completed, result (base64 PNG),
                                                    revised_prompt, size, quality, ...

Paced as on the images endpoint: each partial image and the final one stand for
:data:`~fakeai.content.images.STEP_TOKENS` output tokens. The partial images are events of the
log whatever the request's ``stream`` flag (``stream: false`` only changes what the edge
answers), so ``GET /v1/responses/{id}?stream=true`` shows them too. The image's tokens are
reported in the response's ``tool_usage.image_gen``, apart from ``usage`` (the text model's),
as OpenAI reports them. The picture is :func:`fakeai.content.images.refinements` seeded by the
request's seed, else by the call id, so a response built again draws the same picture.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fakeai.content.built import EventLog
from fakeai.content.images import STEP_TOKENS, ImageOptions, image_options, refinements
from fakeai.content.request_fields import InvalidRequestValue
from fakeai.content.tokenizer import count_tokens

__all__ = [
    "IMAGE_WORDS",
    "ImageCall",
    "ImageTool",
    "build_image_call",
    "check_image_tools",
    "image_tool",
    "image_tools",
]

IMAGE_WORDS = ("draw", "drawing", "illustration", "image", "painting", "photo", "picture", "sketch")
"""Words that make a user's message ask for an image under ``tool_choice: "auto"``."""

_ASKS = re.compile(rf"\b(?:{'|'.join(IMAGE_WORDS)})s?\b", re.IGNORECASE)
_OPTIONS = ("size", "quality", "background", "output_format", "partial_images")
_EVENT = "response.image_generation_call."


@dataclass(frozen=True, slots=True)
class ImageTool:
    """The image generation tool a turn uses: its position in ``tools``, and the tool."""

    index: int
    spec: Mapping[str, Any]


def image_tools(body: Mapping[str, Any]) -> list[ImageTool]:
    """The ``image_generation`` tools a request offers (used or not)."""
    tools = body.get("tools")
    return [
        ImageTool(i, t)
        for i, t in enumerate(tools if isinstance(tools, list) else ())
        if isinstance(t, Mapping) and t.get("type") == "image_generation"
    ]


def _options(tool: ImageTool) -> ImageOptions:
    spec = {k: tool.spec[k] for k in _OPTIONS if k in tool.spec}
    try:
        return image_options({**spec, "stream": True})
    except InvalidRequestValue as e:
        raise InvalidRequestValue(
            f"tools.{tool.index}.{e.param}", f"tools.{tool.index}: {e}"
        ) from e


def check_image_tools(body: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidRequestValue` naming ``tools.<i>.<field>`` for the first option of
    an ``image_generation`` tool that the images endpoint would refuse (so an edge can answer
    a 400 at once, before the turn is built)."""
    for tool in image_tools(body):
        _options(tool)


def _asks_for_image(messages: Sequence[Mapping[str, Any]]) -> bool:
    last = messages[-1] if messages else None
    if last is None or last.get("role") != "user":
        return False
    content = last.get("content")
    return isinstance(content, str) and _ASKS.search(content) is not None


def image_tool(body: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> ImageTool | None:
    """The image tool this turn uses, or None (module docstring); ``messages`` are the chat
    messages the request amounts to (:func:`fakeai.content.responses_input.chat_body`)."""
    found = image_tools(body)
    if not found:
        return None
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping):
        kind = choice.get("type")
        if kind == "image_generation":
            return found[0]
        if kind == "function":
            return None
    elif choice == "none":
        return None
    elif choice == "required":
        tools = body.get("tools") or ()
        functions = any(isinstance(t, Mapping) and t.get("type") == "function" for t in tools)
        return None if functions else found[0]
    return found[0] if _asks_for_image(messages) else None


@dataclass(frozen=True, slots=True)
class ImageCall:
    """One image generation call: its item as added and as done, the base64 PNGs of its
    partial images, and its usage (``tool_usage.image_gen``)."""

    added: dict[str, Any]
    item: dict[str, Any]
    partials: list[str]
    options: dict[str, Any]
    usage: dict[str, Any]

    def emit(self, ev: EventLog, output_index: int) -> None:
        """Append the call's events between its item's ``added`` and ``done`` to ``ev``."""
        where = {"item_id": self.item["id"], "output_index": output_index}
        ev.add(_EVENT + "in_progress", **where)
        ev.add(_EVENT + "generating", **where)
        for k, b64 in enumerate(self.partials):
            ev.add(_EVENT + "partial_image", STEP_TOKENS, **where, partial_image_index=k,
                   partial_image_b64=b64, **self.options)  # fmt: skip
        ev.add(_EVENT + "completed", STEP_TOKENS, **where)


def build_image_call(
    tool: ImageTool, *, call_id: str, messages: Sequence[Mapping[str, Any]], seed: int | None
) -> ImageCall:
    """The call of ``tool`` that draws what the last user message says (module docstring).

    Raises :class:`InvalidRequestValue` naming ``tools.<i>.<field>`` for an option the images
    endpoint would refuse.
    """
    opts = _options(tool)
    users = [m.get("content") for m in messages if m.get("role") == "user"]
    prompt = next((c.strip() for c in reversed(users) if isinstance(c, str) and c.strip()), "")
    prompt = prompt or "An image."
    options = {
        "size": opts.size,
        "quality": opts.quality,
        "background": opts.background,
        "output_format": opts.output_format,
    }
    *partials, final = refinements(call_id if seed is None else f"{seed}:0", opts.size,
                                   opts.partials)  # fmt: skip
    added = {"id": call_id, "type": "image_generation_call", "status": "in_progress",
             "result": None}  # fmt: skip
    item = {**added, "status": "completed", "result": final, "revised_prompt": prompt,
            "action": "generate", **options}  # fmt: skip
    input_tokens = count_tokens(prompt)
    output_tokens = STEP_TOKENS * (len(partials) + 1)
    usage = {
        "input_tokens": input_tokens,
        "input_tokens_details": {"image_tokens": 0, "text_tokens": input_tokens},
        "output_tokens": output_tokens,
        "output_tokens_details": {"image_tokens": output_tokens, "text_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }
    return ImageCall(added, item, partials, options, usage)
