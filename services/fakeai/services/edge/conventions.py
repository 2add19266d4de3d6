"""The conventions OpenAI and vLLM clients expect beyond generation, mounted by the edge.

- ``GET /v1/models/{model}``: one model object; the id may hold slashes
  (``meta-llama/Llama-3.1-8B-Instruct``: a ``path`` converter), and is answered as asked for
  when it names a known model, an HF-style id of one, or an embedding model; anything else is
  a 404 ``model_not_found`` (the catalogue: :mod:`.models`).
- ``POST /v1/embeddings``: deterministic unit vectors (:mod:`.embeddings`); 400 for bad input,
  404 for an unknown model, 400 for a generation model.
- ``GET /health``: vLLM's liveness path, answered as ``/healthz`` is.

The request id, CORS and the key checks are the middleware's (:mod:`.middleware`).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fakeai.errors import BadRequest, NotFound
from fakeai.services.edge.embeddings import (
    EMBEDDING_MODELS,
    EmbeddingModel,
    EmbeddingRequest,
    embed,
    embedding_model,
)
from fakeai.services.edge.models import is_generation_model, is_known_model, model_card
from fakeai.services.edge.openapi import _ERRORS, _error, _json, _ref
from fakeai.services.edge.publish import decode_body
from fakeai.services.edge.schemas import validate
from fakeai.services.edge.stream_routes import healthz

__all__ = ["OPENAPI_PATHS", "OPENAPI_SCHEMAS", "routes"]

_THREAD_FLOATS: Final = 1 << 16
"""An embeddings request computing more floats than this runs in a worker thread, so a large
one (up to 2048 inputs of 4096 dimensions) does not hold up the streams of the event loop."""


async def retrieve_model(request: Request) -> Response:
    """One model object, or a 404 (module docstring)."""
    model_id: str = request.path_params["model"]
    if not is_known_model(model_id):
        raise NotFound(
            f"The model '{model_id}' does not exist", param="model", code="model_not_found"
        )
    return JSONResponse(model_card(model_id))


async def create_embeddings(request: Request) -> Response:
    """Deterministic vectors of the inputs (:mod:`.embeddings`)."""
    # validate() is typed for the generation requests; its 400s fit any request model.
    req: EmbeddingRequest = validate(EmbeddingRequest, decode_body(await request.body()))
    model = embedding_model(req.model)
    if model is None:
        names = ", ".join(EMBEDDING_MODELS)
        if is_generation_model(req.model):
            raise BadRequest(
                f"model: {req.model} is a generation model; embedding models: {names}",
                param="model",
                code="invalid_value",
            )
        raise NotFound(
            f"model: unknown embedding model {req.model!r}; embedding models: {names}",
            param="model",
            code="model_not_found",
        )
    count = 1 if isinstance(req.input, str) else len(req.input)
    if count * (req.dimensions or model.dimensions) > _THREAD_FLOATS:
        body = await asyncio.to_thread(_embed_json, req, model)
    else:
        body = _embed_json(req, model)
    return Response(body, media_type="application/json")


def _embed_json(req: EmbeddingRequest, model: EmbeddingModel) -> bytes:
    return msgspec.json.encode(embed(req, model))


routes: list[BaseRoute] = [
    Route("/v1/models/{model:path}", retrieve_model, methods=["GET"]),
    Route("/v1/embeddings", create_embeddings, methods=["POST"]),
    Route("/health", healthz, methods=["GET"]),
]

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/models/{model}": {
        "get": {
            "summary": "Retrieve a model",
            "operationId": "retrieveModel",
            "parameters": [
                {
                    "name": "model",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "The model id; may contain slashes",
                }
            ],
            "responses": {
                "200": _json(_ref("Model"), "The model"),
                "401": _ERRORS["401"],
                "404": _error("Unknown model"),
            },
        }
    },
    "/v1/embeddings": {
        "post": {
            "summary": "Create embeddings (deterministic unit vectors)",
            "operationId": "createEmbedding",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("Embeddings")}},
            },
            "responses": {
                "200": _json(_ref("EmbeddingList"), "The vectors"),
                **_ERRORS,
                "404": _error("Unknown model"),
                "413": _error("Request body too large"),
            },
        }
    },
    "/health": {
        "get": {
            "summary": "Liveness (vLLM's path; the same as /healthz)",
            "operationId": "health",
            "security": [],
            "responses": {"200": _json(_ref("Status"), "Alive")},
        }
    },
}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "Model": {
        "type": "object",
        "required": ["id", "object", "created", "owned_by"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "model"},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
        },
    },
    "Embeddings": EmbeddingRequest.model_json_schema(),
    "EmbeddingList": {
        "type": "object",
        "required": ["object", "data", "model", "usage"],
        "properties": {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["object", "index", "embedding"],
                    "properties": {
                        "object": {"const": "embedding"},
                        "index": {"type": "integer"},
                        "embedding": {
                            "oneOf": [
                                {"type": "array", "items": {"type": "number"}},
                                {"type": "string", "contentEncoding": "base64"},
                            ]
                        },
                    },
                },
            },
            "model": {"type": "string"},
            "usage": {
                "type": "object",
                "required": ["prompt_tokens", "total_tokens"],
                "properties": {
                    "prompt_tokens": {"type": "integer"},
                    "total_tokens": {"type": "integer"},
                },
            },
        },
    },
}
