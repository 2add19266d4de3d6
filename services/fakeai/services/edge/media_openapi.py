"""The audio and image endpoints' part of the OpenAPI document (:mod:`.openapi` merges it in).

Request schemas come from the pydantic models that validate them (:mod:`.media_schemas`); the
transcription upload is described as its multipart form. ``/v1/realtime`` is a WebSocket, which
OpenAPI 3.1 cannot describe: :mod:`.realtime` documents its protocol.
"""

from __future__ import annotations

from typing import Any, Final

from fakeai.services.edge.media_schemas import ImageRequest, SpeechRequest
from fakeai.services.edge.openapi import (
    _ERRORS,
    _GENERATION_PARAMS,
    _RATE_LIMITED,
    _REF,
    _error,
    _object,
    _ref,
)

__all__ = ["OPENAPI_PATHS", "OPENAPI_SCHEMAS"]

_SSE: Final = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "description": "One event: event (its type), id (its entry id), data (its JSON)",
            "properties": {
                "event": {"type": "string"},
                "id": {"type": "string"},
                "retry": {"type": "integer"},
                "data": {"type": "string"},
            },
        }
    }
}
_STREAM_ID: Final = {"X-Stream-Id": {"$ref": "#/components/headers/StreamId"}}


def _post(summary: str, op_id: str, request: dict[str, Any], ok: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "operationId": op_id,
            "parameters": _GENERATION_PARAMS,
            "requestBody": {"required": True, "content": request},
            "responses": {
                "200": {"description": "The answer", "headers": _STREAM_ID, "content": ok},
                **_ERRORS,
                "404": _error("Unknown model"),
                "413": _error("Request body too large"),
                "429": _RATE_LIMITED,
                "500": _error("An injected server error, or a failed generation"),
                "504": _error("The stream outlived the server's stream time limit"),
            },
        }
    }


OPENAPI_PATHS: dict[str, Any] = {
    "/v1/audio/speech": _post(
        "Text to speech: the audio streamed as generated (wav or pcm), or its events (SSE)",
        "createSpeech",
        {"application/json": {"schema": _ref("SpeechRequest")}},
        {
            "audio/wav": {"schema": {"type": "string", "format": "binary"}},
            "audio/pcm": {"schema": {"type": "string", "format": "binary"}},
            **_SSE,
        },
    ),
    "/v1/audio/transcriptions": _post(
        "Transcribe an audio upload; stream=true: transcript.text.delta / .done events (SSE)",
        "createTranscription",
        {"multipart/form-data": {"schema": _ref("TranscriptionRequest")}},
        {
            "application/json": {"schema": _ref("Transcription")},
            "text/plain": {"schema": {"type": "string"}},
            **_SSE,
        },
    ),
    "/v1/images/generations": _post(
        "Generate PNG images; stream=true: partial images then the completed one (SSE)",
        "createImage",
        {"application/json": {"schema": _ref("ImageRequest")}},
        {"application/json": {"schema": _ref("ImagesResponse")}, **_SSE},
    ),
}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "SpeechRequest": SpeechRequest.model_json_schema(ref_template=_REF),
    "ImageRequest": ImageRequest.model_json_schema(ref_template=_REF),
    "TranscriptionRequest": _object(
        ["file", "model"],
        {
            "file": {"type": "string", "format": "binary"},
            "model": {"type": "string"},
            "language": {"type": "string"},
            "prompt": {"type": "string"},
            "response_format": {"type": "string", "enum": ["json", "text", "verbose_json"]},
            "stream": {"type": "boolean"},
        },
    ),
    "Transcription": _object(["text"], {"text": {"type": "string"}, "usage": {"type": "object"}}),
    "ImagesResponse": _object(
        ["created", "data"],
        {"created": {"type": "integer"}, "data": {"type": "array"}, "usage": {"type": "object"}},
    ),
}
