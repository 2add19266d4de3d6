"""The edge's OpenAPI 3.1 document, served at ``GET /openapi.json``.

Built once per process (:func:`document`, cached, and its JSON bytes encoded once). The request
bodies' schemas come from the pydantic models that validate them (:mod:`.schemas`, JSON Schema
2020-12, the dialect of OpenAPI 3.1), so the document cannot drift from the validation; the
rest (parameters, responses) is written out here. Response bodies are described loosely
(``additionalProperties`` allowed) except errors, whose shape is a contract:
``{"error": {"message", "type", "param", "code"}}``.

The caps that depend on settings (``max_output_tokens``, ``max_timing_ms``, ...) are checked
at run time and not in the document, which is the same for every configuration; a request
beyond one is a 400. Security: a bearer key, optional because a server without keys is open.
"""

from __future__ import annotations

import functools
import importlib.metadata
from typing import Any, Final

import msgspec
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from fakeai.services.edge.faults import HEADER as FAULT_HEADER
from fakeai.services.edge.schemas import ChatCompletionRequest, CompletionRequest

__all__ = ["PATH", "document", "document_bytes", "openapi_endpoint", "routes"]

PATH: Final = "/openapi.json"
_REF = "#/components/schemas/{model}"
_STREAM_ID = r"^(?:(?:chatcmpl|cmpl)-|resp_)[0-9a-f]{35}$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str, *, retry: bool = False) -> dict[str, Any]:
    out = _json(_ref("ErrorResponse"), description)
    if retry:
        out["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return out


_ERRORS: Final = {
    "400": _error("Invalid request (the body, a header or a query parameter)"),
    "401": _error("Missing or unknown API key"),
    "503": _error("Redis unavailable or the server shutting down", retry=True),
}
_RATE_LIMITED: Final = {
    "description": "A limit of the key was reached, or an injected 429",
    "headers": {
        "Retry-After": {"$ref": "#/components/headers/RetryAfter"},
        "x-ratelimit-limit-requests": {"$ref": "#/components/headers/RateLimitLimit"},
        "x-ratelimit-remaining-requests": {"$ref": "#/components/headers/RateLimitRemaining"},
        "x-ratelimit-reset-requests": {"$ref": "#/components/headers/RateLimitReset"},
    },
    "content": {"application/json": {"schema": _ref("ErrorResponse")}},
}


def _header(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_DISCONNECT = _header(
    "X-FakeAI-Disconnect-After",
    {"type": "integer", "minimum": 1},
    "End this connection after N events, without [DONE] (the stream goes on)",
)
_FAULT = _header(
    FAULT_HEADER,
    {"type": "string"},
    "Inject a fault: status=429|500|503, error_after=N, stall=S@N, cut_after=N, "
    "malformed_after=N, or none",
)
_GENERATION_PARAMS: Final = [
    _header(
        "X-FakeAI-TTFT-Ms",
        {"type": "number", "minimum": 0},
        "Time to first token, ms (overrides the model's latency profile)",
    ),
    _header(
        "X-FakeAI-ITL-Ms",
        {"type": "number", "minimum": 0},
        "Inter-token latency, ms (0 and 0: as fast as possible)",
    ),
    _header("X-FakeAI-Seed", {"type": "integer"}, "Seed of the generated text"),
    _DISCONNECT,
    _FAULT,
]
_STREAM_ID_PARAM: Final = {
    "name": "stream_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": _STREAM_ID},
    "description": "The stream id (the X-Stream-Id header, the chunks' id)",
}


def _generation(summary: str, body: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "operationId": body[0].lower() + body[1:].removesuffix("Request"),
            "parameters": _GENERATION_PARAMS,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref(body)}},
            },
            "responses": {
                "200": {
                    "description": "The whole response, or (stream: true) its chunks as SSE; "
                    "every event's id: is its entry id, for Last-Event-ID",
                    "headers": {"X-Stream-Id": {"$ref": "#/components/headers/StreamId"}},
                    "content": {
                        "application/json": {"schema": _ref("Completion")},
                        "text/event-stream": {"schema": {"type": "string"}},
                    },
                },
                **_ERRORS,
                "404": _error("Unknown model"),
                "413": _error("Request body too large"),
                "429": _RATE_LIMITED,
                "500": _error("An injected server error (X-FakeAI-Fault: status=500)"),
            },
        }
    }


def _paths() -> dict[str, Any]:
    stream_not_found = _error("Unknown stream, or a stream of another key")
    return {
        "/v1/chat/completions": _generation("Create a chat completion", "ChatCompletionRequest"),
        "/v1/completions": _generation("Create a completion", "CompletionRequest"),
        "/v1/models": {
            "get": {
                "summary": "List the models",
                "operationId": "listModels",
                "responses": {"200": _json(_ref("ModelList"), "The models"), "401": _ERRORS["401"]},
            }
        },
        "/v1/streams": {
            "get": {
                "summary": "List the running streams (of the caller's key)",
                "operationId": "listStreams",
                "parameters": [
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 1000},
                        "At most this many",
                    )
                ],
                "responses": {
                    "200": _json(_ref("StreamList"), "Running streams, newest first"),
                    **_ERRORS,
                },
            }
        },
        "/v1/streams/{stream_id}": {
            "get": {
                "summary": "Read a stream from the start, or resume it after Last-Event-ID",
                "operationId": "getStream",
                "parameters": [
                    _STREAM_ID_PARAM,
                    _header("Last-Event-ID", {"type": "string"}, "Resume after this event id"),
                    _query("last_event_id", {"type": "string"}, "Resume after this event id"),
                    _query(
                        "format",
                        {"type": "string", "enum": ["sse", "jsonl", "text"]},
                        "The wire format",
                    ),
                    _query(
                        "pace",
                        {"type": "string"},
                        "Replay a finished stream: original, fast, or a positive speed factor",
                    ),
                    _DISCONNECT,
                    _FAULT,
                ],
                "responses": {
                    "200": {
                        "description": "The stream's events, live until its end",
                        "headers": {"X-Stream-Id": {"$ref": "#/components/headers/StreamId"}},
                        "content": {
                            "text/event-stream": {"schema": {"type": "string"}},
                            "application/x-ndjson": {"schema": {"type": "string"}},
                            "text/plain": {"schema": {"type": "string"}},
                        },
                    },
                    **_ERRORS,
                    "404": stream_not_found,
                    "410": _error("The stream has expired"),
                },
            }
        },
        "/v1/streams/{stream_id}/info": {
            "get": {
                "summary": "A stream's status, model, chunk count and timings",
                "operationId": "getStreamInfo",
                "parameters": [_STREAM_ID_PARAM],
                "responses": {
                    "200": _json(_ref("StreamInfo"), "The stream"),
                    **_ERRORS,
                    "404": stream_not_found,
                    "410": _error("The stream has expired"),
                },
            }
        },
        "/v1/streams/{stream_id}/cancel": {
            "post": {
                "summary": "Stop a stream's generation (harmless when it has finished)",
                "operationId": "cancelStream",
                "parameters": [_STREAM_ID_PARAM],
                "responses": {
                    "200": _json(_ref("CancelResult"), "Cancelling, or the final status"),
                    **_ERRORS,
                    "404": stream_not_found,
                    "410": _error("The stream has expired"),
                },
            }
        },
        "/v1/metrics/latency": {
            "get": {
                "summary": "TTFT, ITL and end-to-end latency over a recent window",
                "operationId": "getLatency",
                "parameters": [
                    _query("model", {"type": "string"}, "One model (default: all)"),
                    _query("window", {"type": "integer", "minimum": 1}, "Seconds (default 60)"),
                ],
                "responses": {
                    "200": _json({"type": "object"}, "count, mean, p50, p90, p99 per metric"),
                    **_ERRORS,
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus text exposition",
                "operationId": "getMetrics",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "503": _ERRORS["503"],
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "operationId": "healthz",
                "security": [],
                "responses": {"200": _json(_ref("Status"), "Alive")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: can this edge serve?",
                "operationId": "readyz",
                "security": [],
                "responses": {"200": _json(_ref("Status"), "Ready"), "503": _ERRORS["503"]},
            }
        },
        PATH: {
            "get": {
                "summary": "This document",
                "operationId": "getOpenAPI",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
            }
        },
    }


def _object(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


_NULLABLE_STR: Final = {"type": ["string", "null"]}


def _schemas() -> dict[str, Any]:
    return {
        "ErrorResponse": {
            "type": "object",
            "required": ["error"],
            "additionalProperties": False,
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message", "type", "param", "code"],
                    "additionalProperties": False,
                    "properties": {
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "param": _NULLABLE_STR,
                        "code": _NULLABLE_STR,
                    },
                }
            },
        },
        "Completion": _object(
            ["id", "object", "created", "model", "choices"],
            {
                "id": {"type": "string"},
                "object": {"type": "string"},
                "created": {"type": "integer"},
                "model": {"type": "string"},
                "choices": {"type": "array", "items": {"type": "object"}},
                "usage": {"type": "object"},
            },
        ),
        "ModelList": _object(
            ["object", "data"],
            {
                "object": {"const": "list"},
                "data": {
                    "type": "array",
                    "items": _object(
                        ["id", "object"],
                        {
                            "id": {"type": "string"},
                            "object": {"const": "model"},
                            "created": {"type": "integer"},
                            "owned_by": {"type": "string"},
                        },
                    ),
                },
            },
        ),
        "StreamList": _object(
            ["object", "data"],
            {
                "object": {"const": "list"},
                "data": {
                    "type": "array",
                    "items": _object(
                        ["id", "status", "created_ms"],
                        {
                            "id": {"type": "string"},
                            "model": _NULLABLE_STR,
                            "status": {"type": "string"},
                            "endpoint": _NULLABLE_STR,
                            "created_ms": {"type": "integer"},
                        },
                    ),
                },
            },
        ),
        "StreamInfo": _object(
            ["id", "object", "status", "chunks", "finished"],
            {
                "id": {"type": "string"},
                "object": {"const": "stream"},
                "status": {"type": "string"},
                "model": _NULLABLE_STR,
                "endpoint": _NULLABLE_STR,
                "stream": {"type": "boolean"},
                "created": {"type": "integer"},
                "created_ms": {"type": "integer"},
                "chunks": {"type": "integer"},
                "last_event_id": _NULLABLE_STR,
                "finished": {"type": "boolean"},
                "timings": {"type": "object"},
                "finish_reason": _NULLABLE_STR,
                "usage": {"type": "object"},
                "error": {"type": ["object", "null"]},
                "cancel_requested": {"type": "boolean"},
            },
        ),
        "CancelResult": _object(
            ["id", "status", "cancel_requested"],
            {
                "id": {"type": "string"},
                "status": {"type": "string"},
                "cancel_requested": {"type": "boolean"},
            },
        ),
        "Status": _object(["status"], {"status": {"type": "string"}}),
    }


def _version() -> str:
    try:
        return importlib.metadata.version("fakeai-streams")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once; do not modify the returned dict). The Responses
    API and the conventions modules add their own paths and schemas (imported here: they may
    use this module's helpers)."""
    from fakeai.services.edge import conventions, dashboard, media_routes, responses_api

    _, defs = models_json_schema(
        [(ChatCompletionRequest, "validation"), (CompletionRequest, "validation")],
        ref_template=_REF,
    )
    schemas = {
        **_schemas(),
        **responses_api.OPENAPI_SCHEMAS,
        **conventions.OPENAPI_SCHEMAS,
        **dashboard.OPENAPI_SCHEMAS,
        **media_routes.OPENAPI_SCHEMAS,
    }
    request_schemas: dict[str, Any] = defs.get("$defs", {})
    clash = set(schemas) & set(request_schemas)
    if clash:  # a new request model named like a response schema: rename one of them
        raise RuntimeError(f"OpenAPI schema names defined twice: {sorted(clash)}")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "FakeAI Streams",
            "version": _version(),
            "summary": "An OpenAI-compatible fake LLM server with durable, resumable streams",
        },
        "paths": {
            **_paths(),
            **responses_api.OPENAPI_PATHS,
            **conventions.OPENAPI_PATHS,
            **dashboard.OPENAPI_PATHS,
            **media_routes.OPENAPI_PATHS,
        },
        "components": {
            "schemas": {**request_schemas, **schemas},
            "headers": {
                "RetryAfter": {"schema": {"type": "integer"}, "description": "Seconds to wait"},
                "StreamId": {"schema": {"type": "string"}, "description": "The stream id"},
                "RateLimitLimit": {
                    "schema": {"type": "string"},
                    "description": "Requests per minute",
                },
                "RateLimitRemaining": {
                    "schema": {"type": "string"},
                    "description": "Requests left",
                },
                "RateLimitReset": {
                    "schema": {"type": "string"},
                    "description": "Until the window resets (1s, 6m0s)",
                },
            },
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        # Either a key or none: a server without keys configured is open.
        "security": [{"bearerAuth": []}, {}],
    }


@functools.cache
def document_bytes() -> bytes:
    """:func:`document` as JSON, encoded once."""
    return msgspec.json.encode(document())


async def openapi_endpoint(request: Request) -> Response:
    return Response(document_bytes(), media_type="application/json")


routes: list[BaseRoute] = [Route(PATH, openapi_endpoint, methods=["GET"])]
