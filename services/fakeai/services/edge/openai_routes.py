"""OpenAI endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``.

A request is bounded before anything is written (:func:`.schemas.check_caps`: ``n``, token
counts, tools; :func:`.schemas.check_depth`: JSON nesting; the timing headers by
``max_timing_ms``): beyond a cap it is a 400 that names the setting. It then becomes a stream
through :func:`.publish.open_stream` (admission, record, publish, hub subscription: one path
for every generation endpoint, the Responses API's too).

A streaming request is answered with the stream's SSE; a non-streaming one waits for the
stream's ``r`` entry (or its error entry), racing the client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fakeai.errors import ServiceUnavailable, error_body
from fakeai.services.edge.faults import inject
from fakeai.services.edge.formats import Formatter
from fakeai.services.edge.interrupted import StreamInterrupted
from fakeai.services.edge.models import model_cards
from fakeai.services.edge.publish import decode_body, disconnect_after, open_stream
from fakeai.services.edge.responses import stream_response
from fakeai.services.edge.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    OpenAIRequest,
    check_caps,
    validate,
)
from fakeai.services.edge.state import EdgeState, edge_state
from fakeai.streams.log import Entry, Kind
from fakeai.timeseries.names import CLIENT_DISCONNECTS
from fakeai.wire.messages import Endpoint

__all__ = [
    "Answer",
    "disconnect_after",
    "error_status",
    "interrupted_answer",
    "routes",
    "whole_response",
]

# HTTP status for a non-streaming request whose stream ended with an error entry.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "invalid_value": 400,
    "invalid_request": 400,  # a value the producer's builders refused
    "model_not_found": 404,
    "cancelled": 409,
    "rate_limit_exceeded": 429,
    "timeout": 504,
}


async def _create(request: Request, kind: Endpoint, model_cls: type[OpenAIRequest]) -> Response:
    state = edge_state(request)
    state.check_open()
    req = validate(model_cls, decode_body(await request.body()))
    check_caps(req, state.settings)
    opened = await open_stream(
        request,
        state,
        kind=kind,
        endpoint=kind,
        model=req.model,
        body=req.model_dump(mode="json", exclude_none=True),
        stream=req.stream,
        seed=req.seed,
    )
    response: Response
    if req.stream:
        response = stream_response(
            state,
            inject(opened.entries, opened.fault, closing=state.closing),
            Formatter("sse", state.settings.retry_ms),
            stream_id=opened.sid,
            model=req.model,
            disconnect_after=opened.cut,
            arrived=opened.arrived,
            release=opened.release,
        )
    else:
        try:
            response = await whole_response(request, state, opened.entries, opened.sid, req.model)
        finally:
            opened.release()  # also when the wait was cancelled before it first read the log
    response.headers.update(opened.admission.headers)
    return response


Answer = Callable[[AsyncGenerator[list[Entry], None], str], Coroutine[Any, Any, Response]]
"""Reads a stream's entries (and closes them) into the answer to a non-streaming request."""


async def whole_response(
    request: Request,
    state: EdgeState,
    entries: AsyncGenerator[list[Entry], None],
    sid: str,
    model: str,
    answer: Answer | None = None,
) -> Response:
    """Wait for the answer of a non-streaming request: by default its ``r`` entry (or its
    error entry).

    The wait races the client: a client that goes away stops the wait (its stream goes on).
    """
    waiter = asyncio.create_task((answer or _first_response)(entries, sid))
    watcher = asyncio.create_task(_disconnected(request))
    try:
        await asyncio.wait({waiter, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not waiter.done():
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
    if waiter.cancelled():
        state.recorder.incr(CLIENT_DISCONNECTS, model)
        await entries.aclose()
        return Response(status_code=499)  # nobody reads it: the client is gone
    return waiter.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def error_status(data: bytes) -> int:
    """The HTTP status of a non-streaming request whose stream ended with error entry
    ``data``."""
    return _ERROR_STATUS.get(_error_code(data) or "", 500)


def interrupted_answer(e: StreamInterrupted, headers: dict[str, str]) -> Response:
    """The answer of a non-streaming request whose wait the edge cut short."""
    if e.code == "timeout":  # the stream outlived max_stream_s without an end
        body = error_body(e.message, "server_error", code=e.code)
        return JSONResponse(body, status_code=504, headers=headers)
    raise ServiceUnavailable(e.message, code=e.code, retry_after_s=1) from None


async def _first_response(entries: AsyncGenerator[list[Entry], None], sid: str) -> Response:
    headers = {"X-Stream-Id": sid}
    try:
        async for batch in entries:
            for e in batch:
                if e.kind == Kind.RESPONSE:
                    return Response(e.data, media_type="application/json", headers=headers)
                if e.kind == Kind.ERROR:
                    status = error_status(e.data)
                    return Response(
                        e.data, status_code=status, media_type="application/json", headers=headers
                    )
                if e.kind == Kind.DONE:
                    break
    except StreamInterrupted as e:
        return interrupted_answer(e, headers)
    finally:
        await entries.aclose()
    raise ServiceUnavailable(
        f"stream {sid} ended without a response", code="stream_incomplete", retry_after_s=1
    )


class _Err(msgspec.Struct):
    code: str | None = None
    type: str | None = None


class _ErrPayload(msgspec.Struct):
    error: _Err


def _error_code(data: bytes) -> str | None:
    try:
        err = msgspec.json.decode(data, type=_ErrPayload).error
    except msgspec.DecodeError:
        return None
    return err.code or err.type


async def chat_completions(request: Request) -> Response:
    return await _create(request, "chat", ChatCompletionRequest)


async def completions(request: Request) -> Response:
    return await _create(request, "completion", CompletionRequest)


async def list_models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": model_cards()})


routes: list[BaseRoute] = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
]
