"""OpenAI request bodies, validated at the HTTP boundary (pydantic).

Fields follow the OpenAI API reference (https://platform.openai.com/docs/api-reference/chat/create,
.../completions/create) plus the vLLM extensions benchmarks send (``min_tokens``,
``ignore_eos``, ``stream_options.continuous_usage_stats``). Unknown fields are kept and passed
on (OpenAI adds fields often; a fake server must not reject them). Types are strict: ``"5"``
is not an integer, so a client bug surfaces as a 400 naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fakeai.errors import BadRequest

__all__ = ["ChatCompletionRequest", "CompletionRequest", "OpenAIRequest", "validate"]

M = TypeVar("M", bound="OpenAIRequest")

_Stop = str | Annotated[list[str], Field(max_length=4)] | None


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class StreamOptions(_Model):
    include_usage: bool | None = None
    continuous_usage_stats: bool | None = None


class ChatMessage(_Model):
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class OpenAIRequest(_Model):
    """Fields common to chat and completions."""

    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=128)
    max_tokens: int | None = Field(None, ge=0)
    min_tokens: int | None = Field(None, ge=0)
    ignore_eos: bool | None = None
    stop: _Stop = None
    seed: int | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    user: str | None = None


class ChatCompletionRequest(OpenAIRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=0)
    tools: list[dict[str, Any]] | None = None
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
