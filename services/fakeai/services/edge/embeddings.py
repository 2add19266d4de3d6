"""Embeddings: the models, the request, and deterministic vectors (``POST /v1/embeddings``).

A vector is a pure function of the model and one input (a string or a token array): the
bytes of SHAKE-256 over both, read as signed 32-bit integers, scaled to unit length, and
rounded to float32. The same input always gives the same vector, on every edge and across
restarts, so a client's tests can assert on them. ``dimensions`` keeps the first components
of the model's native vector and scales them to unit length again (as text-embedding-3 does:
its shortened embeddings are a normalised prefix), and SHAKE-256 output of ``n`` bytes is a
prefix of that of ``m > n`` bytes, so only what is kept is ever computed.

``encoding_format: base64`` is the vector's little-endian float32 bytes, base64-encoded, as the
openai SDK decodes them (``array.array("f", base64.b64decode(s))``); ``float`` is the same
float32 values as JSON numbers, so both encodings carry identical numbers.

Bounds (OpenAI's own): at most :data:`MAX_INPUTS` inputs, each at most
:data:`MAX_INPUT_TOKENS` tokens and none empty; a request beyond them is a 400 that says which.
"""

from __future__ import annotations

import base64
import hashlib
import math
import sys
from array import array
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from fakeai.content.tokenizer import count_prompt_tokens
from fakeai.errors import BadRequest

__all__ = [
    "EMBEDDING_MODELS",
    "MAX_INPUTS",
    "MAX_INPUT_TOKENS",
    "EmbeddingModel",
    "EmbeddingRequest",
    "embed",
    "embedding_model",
    "inputs_of",
]

MAX_INPUTS: Final = 2048
"""Inputs per request (OpenAI's limit for an array input)."""
MAX_INPUT_TOKENS: Final = 8192
"""Tokens per input (the context length of OpenAI's embedding models)."""


@dataclass(frozen=True, slots=True)
class EmbeddingModel:
    id: str
    dimensions: int
    """Length of the native vector."""
    shortenable: bool
    """Accepts ``dimensions`` (text-embedding-3 and later; not ada-002)."""


EMBEDDING_MODELS: Final = {
    m.id: m
    for m in (
        EmbeddingModel("text-embedding-3-small", 1536, shortenable=True),
        EmbeddingModel("text-embedding-3-large", 3072, shortenable=True),
        EmbeddingModel("text-embedding-ada-002", 1536, shortenable=False),
        EmbeddingModel("BAAI/bge-m3", 1024, shortenable=True),
        EmbeddingModel("intfloat/e5-mistral-7b-instruct", 4096, shortenable=True),
    )
}
"""The embedding models this server knows, by id (listed by ``GET /v1/models``)."""

_TokenId = Annotated[int, Field(ge=0, le=2**31 - 1)]


class EmbeddingRequest(BaseModel):
    """The body of ``POST /v1/embeddings`` (unknown fields are accepted and ignored, as in the
    other OpenAI request models)."""

    model_config = ConfigDict(strict=True, extra="allow")

    model: str = Field(min_length=1)
    input: str | list[str] | list[_TokenId] | list[list[_TokenId]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


def embedding_model(name: str) -> EmbeddingModel | None:
    """The embedding model ``name`` names exactly, or None."""
    return EMBEDDING_MODELS.get(name)


def inputs_of(req: EmbeddingRequest) -> list[str | list[int]]:
    """The request's inputs as a list (a single string or token array is one input).

    Raises:
        BadRequest: no input, more than :data:`MAX_INPUTS`, or an empty one.
    """
    raw = req.input
    items: list[str | list[int]]
    if isinstance(raw, str):
        items = [raw]
    elif raw and isinstance(raw[0], int):
        items = [raw]  # one token array
    else:
        items = list(cast(list[str] | list[list[int]], raw))
    if not items:
        raise BadRequest("input: must not be an empty array", param="input", code="invalid_value")
    if len(items) > MAX_INPUTS:
        raise BadRequest(
            f"input: at most {MAX_INPUTS} inputs per request; got {len(items)}",
            param="input",
            code="invalid_value",
        )
    for i, item in enumerate(items):
        if not item:
            where = "input" if len(items) == 1 else f"input.{i}"
            raise BadRequest(f"{where}: must not be empty", param="input", code="invalid_value")
    return items


def _dimensions(req: EmbeddingRequest, model: EmbeddingModel) -> int:
    if req.dimensions is None:
        return model.dimensions
    if not model.shortenable:
        raise BadRequest(
            f"dimensions: {model.id} does not support specifying dimensions",
            param="dimensions",
            code="invalid_value",
        )
    if req.dimensions > model.dimensions:
        raise BadRequest(
            f"dimensions: at most {model.dimensions} for {model.id}; got {req.dimensions}",
            param="dimensions",
            code="invalid_value",
        )
    return req.dimensions


def _material(item: str | list[int]) -> bytes:
    if isinstance(item, str):
        return b"s" + item.encode("utf-8", "surrogatepass")
    return b"t" + ",".join(map(str, item)).encode()


def vector(model: str, item: str | list[int], dimensions: int) -> array[float]:
    """The unit float32 vector of ``item`` for ``model``, ``dimensions`` long (pure)."""
    shake = hashlib.shake_256(model.encode() + b"\0" + _material(item))
    ints = array("i", shake.digest(4 * dimensions))
    if sys.byteorder == "big":  # the same vector on every machine
        ints.byteswap()
    norm = math.hypot(*ints) or 1.0
    return array("f", [x / norm for x in ints])


def _encode(vec: array[float], fmt: str) -> list[float] | str:
    if fmt == "float":
        return vec.tolist()
    raw = vec.tobytes() if sys.byteorder == "little" else _swapped(vec)
    return base64.b64encode(raw).decode("ascii")


def _swapped(vec: array[float]) -> bytes:
    out = array("f", vec)
    out.byteswap()
    return out.tobytes()


def embed(req: EmbeddingRequest, model: EmbeddingModel) -> dict[str, Any]:
    """The response body of an embeddings request (OpenAI's ``list`` of ``embedding``).

    Raises:
        BadRequest: an input that is empty or longer than :data:`MAX_INPUT_TOKENS` tokens, too
            many inputs, or ``dimensions`` the model cannot give.
    """
    items = inputs_of(req)
    dims = _dimensions(req, model)
    tokens = 0
    for i, item in enumerate(items):
        n = count_prompt_tokens(item)
        if n > MAX_INPUT_TOKENS:
            raise BadRequest(
                f"input.{i}: {n} tokens; {model.id} takes at most {MAX_INPUT_TOKENS} per input",
                param="input",
                code="context_length_exceeded",
            )
        tokens += n
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": _encode(vector(model.id, item, dims), req.encoding_format),
        }
        for i, item in enumerate(items)
    ]
    return {
        "object": "list",
        "data": data,
        "model": req.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
