"""The Responses API's part of the OpenAPI document (:mod:`.openapi` merges it in).

The request schema comes from the pydantic model that validates it
(:class:`.schemas.ResponsesRequest`); response bodies are described loosely, as the rest of
the document does, and errors by their contract shape.
"""

from __future__ import annotations

from typing import Any, Final

from fakeai.services.edge.openapi import (
    _ERRORS,
    _GENERATION_PARAMS,
    _RATE_LIMITED,
    _REF,
    _error,
    _json,
    _object,
    _query,
    _ref,
)
from fakeai.services.edge.schemas import ResponsesRequest

__all__ = ["OPENAPI_PATHS", "OPENAPI_SCHEMAS"]

_ID: Final = {
    "name": "response_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The response id (resp_…), which is also its stream id",
}
_NOT_FOUND: Final = _error("Unknown, unstored, deleted or expired response, or another key's")


def _operation(summary: str, op_id: str, ok: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "operationId": op_id,
        "parameters": [_ID, *more.pop("parameters", [])],
        "responses": {"200": ok, **_ERRORS, "404": _NOT_FOUND, **more},
    }


OPENAPI_PATHS: dict[str, Any] = {
    "/v1/responses": {
        "post": {
            "summary": "Create a response (Responses API)",
            "operationId": "createResponse",
            "parameters": _GENERATION_PARAMS,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("ResponsesRequest")}},
            },
            "responses": {
                "200": {
                    "description": "The response (queued when background), or (stream: true) "
                    "its events as SSE: event: <type>, id: <entry id>, no [DONE]",
                    "headers": {"X-Stream-Id": {"$ref": "#/components/headers/StreamId"}},
                    "content": {
                        "application/json": {"schema": _ref("Response")},
                        "text/event-stream": {"schema": {"type": "string"}},
                    },
                },
                **_ERRORS,
                "404": _error("Unknown model"),
                "409": _error("The response was cancelled before it finished"),
                "413": _error("Request body too large"),
                "429": _RATE_LIMITED,
                "500": _error("An injected server error, or a failed generation"),
                "504": _error("The response outlived the server's stream time limit"),
            },
        }
    },
    "/v1/responses/{response_id}": {
        "get": _operation(
            "Retrieve a response, or (stream=true) stream its events",
            "retrieveResponse",
            {
                "description": "The response folded from its events, or its events as SSE",
                "content": {
                    "application/json": {"schema": _ref("Response")},
                    "text/event-stream": {"schema": {"type": "string"}},
                },
            },
            parameters=[
                _query("stream", {"type": "boolean"}, "Stream the events (SSE)"),
                _query(
                    "starting_after",
                    {"type": "integer", "minimum": 0},
                    "With stream=true: resume after the event with this sequence_number",
                ),
            ],
            **{"410": _error("The response's stream has expired")},
        ),
        "delete": _operation(
            "Delete a response (cancelled first if it runs)",
            "deleteResponse",
            _json(_ref("ResponseDeleted"), "Deleted"),
        ),
    },
    "/v1/responses/{response_id}/cancel": {
        "post": _operation(
            "Cancel a background response",
            "cancelResponse",
            _json(_ref("Response"), "The response, status cancelled"),
        )
    },
    "/v1/responses/{response_id}/input_items": {
        "get": _operation(
            "List a response's input items",
            "listResponseInputItems",
            _json(_ref("ResponseItemList"), "A page of input items"),
            parameters=[
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "Page size"),
                _query("order", {"type": "string", "enum": ["asc", "desc"]}, "Item order"),
                _query("after", {"type": "string"}, "Start after the item with this id"),
            ],
        )
    },
}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "ResponsesRequest": ResponsesRequest.model_json_schema(ref_template=_REF),
    "Response": _object(
        ["id", "object", "created_at", "status", "model", "output"],
        {
            "id": {"type": "string"},
            "object": {"const": "response"},
            "created_at": {"type": "integer"},
            "status": {"type": "string"},
            "model": {"type": "string"},
            "output": {"type": "array"},
        },
    ),
    "ResponseDeleted": _object(
        ["id", "object", "deleted"],
        {"id": {"type": "string"}, "object": {"type": "string"}, "deleted": {"type": "boolean"}},
    ),
    "ResponseItemList": _object(
        ["object", "data", "has_more"],
        {"object": {"const": "list"}, "data": {"type": "array"}, "has_more": {"type": "boolean"}},
    ),
}
