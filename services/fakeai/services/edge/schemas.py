"""OpenAI request bodies, validated at the HTTP boundary (pydantic), and the edge's hard caps.

Fields follow the OpenAI API reference (https://platform.openai.com/docs/api-reference/chat/create,
.../completions/create) plus the vLLM extensions benchmarks send (``min_tokens``,
``ignore_eos``, ``stream_options.continuous_usage_stats``). Unknown fields are kept and passed
on (OpenAI adds fields often; a fake server must not reject them). Types are strict: ``"5"``
is not an integer, so a client bug surfaces as a 400 naming the field.

Every request is bounded before it reaches a producer (:func:`check_caps`): ``n`` by the
setting ``max_choices``, ``max_tokens`` / ``max_completion_tokens`` / ``min_tokens`` by
``max_output_tokens``; a value beyond its cap is a 400 that names the setting. JSON nesting is
bounded by :data:`MAX_DEPTH` (:func:`check_depth`): deeper bodies would overflow the decoders and
serializers down the line (msgspec and pydantic refuse a few hundred levels with a
``RecursionError`` / ``ValueError``, which used to surface as a 500).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fakeai.config import Settings
from fakeai.content import InvalidRequestValue
from fakeai.content.audio import AUDIO_FORMATS
from fakeai.content.image_tool import check_image_tools
from fakeai.errors import BadRequest

__all__ = [
    "MAX_DEPTH",
    "ChatCompletionRequest",
    "CompletionRequest",
    "OpenAIRequest",
    "RequestModel",
    "ResponsesRequest",
    "check_caps",
    "check_depth",
    "check_response_caps",
    "validate",
]

M = TypeVar("M", bound=BaseModel)

MAX_DEPTH = 64
"""Deepest JSON nesting accepted in a request body (objects and arrays); deeper is a 400."""

_Stop = str | Annotated[list[str], Field(max_length=4)] | None
_FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"
"""OpenAI's rule for a function name (chat/create, ``tools[].function.name``)."""


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


RequestModel = _Model
"""The base of every request body: strict types, unknown fields kept."""


class StreamOptions(_Model):
    include_usage: bool | None = None
    continuous_usage_stats: bool | None = None


class ChatMessage(_Model):
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class FunctionDefinition(_Model):
    name: str = Field(pattern=_FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Model):
    """A tool; ``function`` is required when ``type`` is ``"function"`` (:func:`check_caps`)."""

    type: str = Field(min_length=1)
    function: FunctionDefinition | None = None


class OpenAIRequest(_Model):
    """Fields common to chat and completions."""

    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    min_tokens: int | None = Field(None, ge=0)
    ignore_eos: bool | None = None
    stop: _Stop = None
    seed: int | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    user: str | None = None


class ChatAudio(_Model):
    """``audio`` of a chat request with ``"audio"`` in ``modalities``: the voice, and the
    format of the answer's audio (``pcm16`` or ``wav``, :data:`fakeai.content.audio.
    AUDIO_FORMATS`; OpenAI's mp3, flac, opus need an encoder this server does not ship)."""

    voice: str | dict[str, Any]
    format: str


class ChatCompletionRequest(OpenAIRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    modalities: list[Literal["text", "audio"]] | None = None
    audio: ChatAudio | None = None
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: dict[str, Any] | None = None


class CompletionRequest(OpenAIRequest):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool | None = None
    logprobs: int | None = Field(None, ge=0, le=5)
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1, le=20)


class ResponsesRequest(_Model):
    """``POST /v1/responses`` (https://platform.openai.com/docs/api-reference/responses/create).

    ``max_output_tokens`` is at least 16, as OpenAI requires; ``store`` defaults to true.
    """

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    stream: bool = False
    background: bool | None = None
    store: bool | None = None
    max_output_tokens: int | None = Field(None, ge=16)
    metadata: dict[str, str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    previous_response_id: str | None = None
    stream_options: dict[str, Any] | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    user: str | None = None


_METADATA_KEYS, _METADATA_KEY_LEN, _METADATA_VALUE_LEN = 16, 64, 512
"""OpenAI's bounds on ``metadata``: 16 pairs, keys up to 64 characters, values up to 512."""


def check_response_caps(req: ResponsesRequest, settings: Settings) -> None:
    """The caps and rules of a Responses request that pydantic cannot say.

    Raises:
        BadRequest: ``max_output_tokens`` beyond the setting, an ``image_generation`` tool
            option the images endpoint refuses, ``background`` without ``store``,
            ``metadata`` beyond OpenAI's bounds, a function tool without a valid ``name``, or
            a ``tool_choice`` that names no tool.
    """
    cap = settings.max_output_tokens
    _cap(req.max_output_tokens, "max_output_tokens", cap, "max_output_tokens")
    try:
        check_image_tools({"tools": req.tools})
    except InvalidRequestValue as e:
        raise BadRequest(str(e), param=e.param, code="invalid_value") from None
    if req.background and req.store is False:
        raise BadRequest(
            "background: a background response must be stored (store: true) so that it can be "
            "retrieved",
            param="background",
        )
    metadata = req.metadata or {}
    if len(metadata) > _METADATA_KEYS or any(
        len(k) > _METADATA_KEY_LEN or len(v) > _METADATA_VALUE_LEN for k, v in metadata.items()
    ):
        raise BadRequest(
            f"metadata: at most {_METADATA_KEYS} pairs, keys up to {_METADATA_KEY_LEN} and values "
            f"up to {_METADATA_VALUE_LEN} characters",
            param="metadata",
        )
    names: list[str] = []
    for i, tool in enumerate(req.tools or ()):
        if tool.get("type") == "function":
            name = tool.get("name")
            if not isinstance(name, str) or not re.match(_FUNCTION_NAME, name):
                raise BadRequest(
                    f"tools.{i}.name: a function tool needs a name of 1-64 letters, digits, "
                    f"underscores or dashes; got {name!r}",
                    param=f"tools.{i}.name",
                )
            names.append(name)
    choice = req.tool_choice
    if isinstance(choice, str) and choice not in ("none", "auto", "required"):
        raise BadRequest(
            f"tool_choice: expected 'none', 'auto', 'required' or an object; got {choice!r}",
            param="tool_choice",
        )
    if choice == "required" and not req.tools:
        raise BadRequest("tool_choice: 'required' needs at least one tool", param="tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name")
        if name not in names:
            raise BadRequest(
                f"tool_choice: names function {name!r}, which is not among the tools "
                f"({', '.join(map(repr, names)) or 'none'})",
                param="tool_choice.name",
            )


def check_depth(body: Any, limit: int = MAX_DEPTH) -> None:
    """A 400 when ``body`` nests objects and arrays deeper than ``limit`` levels.

    Iterative (an explicit stack), so the check itself cannot overflow.
    """
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            raise too_deep(limit)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def too_deep(limit: int = MAX_DEPTH) -> BadRequest:
    return BadRequest(
        f"the request body nests JSON objects and arrays deeper than {limit} levels",
        code="invalid_json",
    )


def _cap(value: int | None, param: str, limit: int, setting: str) -> None:
    if value is not None and value > limit:
        raise BadRequest(
            f"{param}: {value} is above this server's limit of {limit} "
            f"(setting {setting}, FAKEAI_{setting.upper()})",
            param=param,
            code="invalid_value",
        )


def check_caps(req: OpenAIRequest, settings: Settings) -> None:
    """The hard caps of the module docstring, and the tool rules pydantic cannot say.

    Raises:
        BadRequest: the first field beyond its cap (the message names the setting), a
            ``min_tokens`` above the token cap, a function tool without ``function``, or a
            ``tool_choice`` that names no tool.
    """
    _cap(req.n, "n", settings.max_choices, "max_choices")
    cap = settings.max_output_tokens
    _cap(req.max_tokens, "max_tokens", cap, "max_output_tokens")
    _cap(req.min_tokens, "min_tokens", cap, "max_output_tokens")
    limit = req.max_tokens
    if isinstance(req, ChatCompletionRequest):
        _cap(req.max_completion_tokens, "max_completion_tokens", cap, "max_output_tokens")
        if req.max_completion_tokens is not None:
            limit = req.max_completion_tokens
        _check_tools(req)
        _check_audio(req)
    if req.min_tokens is not None and limit is not None and req.min_tokens > limit:
        raise BadRequest(
            f"min_tokens: {req.min_tokens} is above the token limit of the request ({limit})",
            param="min_tokens",
            code="invalid_value",
        )


def _check_audio(req: ChatCompletionRequest) -> None:
    """Audio output needs ``audio`` with a format this server makes; streamed, ``pcm16``
    (as OpenAI requires)."""
    if "audio" not in (req.modalities or ()):
        return
    if req.audio is None:
        raise BadRequest(
            'audio: required when modalities include "audio" (voice and format)', param="audio"
        )
    offered = ("pcm16",) if req.stream else AUDIO_FORMATS
    if req.audio.format not in offered:
        raise BadRequest(
            f"audio.format {req.audio.format!r} is not supported"
            f"{' when streaming' if req.stream else ''}; supported: {', '.join(offered)}",
            param="audio.format",
            code="invalid_value",
        )


def _check_tools(req: ChatCompletionRequest) -> None:
    names: list[str] = []
    for i, tool in enumerate(req.tools or ()):
        if tool.type == "function":
            if tool.function is None:
                raise BadRequest(
                    f"tools.{i}.function: missing required field (a tool of type "
                    "'function' needs its definition)",
                    param=f"tools.{i}.function",
                )
            names.append(tool.function.name)
    choice = req.tool_choice
    if isinstance(choice, str) and choice not in ("none", "auto", "required"):
        raise BadRequest(
            f"tool_choice: expected 'none', 'auto', 'required' or a function object; "
            f"got {choice!r}",
            param="tool_choice",
        )
    if choice == "required" and not names:
        raise BadRequest(
            "tool_choice: 'required' needs at least one function tool", param="tool_choice"
        )
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or name not in names:
            raise BadRequest(
                f"tool_choice: names function {name!r}, which is not among the tools "
                f"({', '.join(map(repr, names)) or 'none'})",
                param="tool_choice.function.name",
            )


def validate(model: type[M], body: Any) -> M:
    """``body`` as ``model``, or a 400 whose ``param`` names the first offending field."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object", param=None)
    try:
        return model.model_validate(body)
    except ValidationError as e:
        errors = e.errors()
        param = _param(errors[0]["loc"])
        if errors[0]["type"] == "missing":
            raise BadRequest(f"{param}: missing required field", param=param) from None
        # A union reports one error per member: show them all for the same field.
        msgs = dict.fromkeys(
            err["msg"]
            for err in errors
            if _param(err["loc"]) == param and err["type"] != "none_required"
        )
        msg = f"{param}: {'; or '.join(msgs) or errors[0]['msg']}"
        raise BadRequest(msg, param=param, code="invalid_value") from None


_TYPE_TAGS = frozenset({"str", "list", "int", "dict", "bool", "float", "list[str]", "list[int]"})


def _param(loc: tuple[int | str, ...]) -> str | None:
    """The field path of a pydantic error location, without union member tags."""
    parts = [str(p) for p in loc if isinstance(p, int) or (p not in _TYPE_TAGS and "[" not in p)]
    return ".".join(parts) or None
