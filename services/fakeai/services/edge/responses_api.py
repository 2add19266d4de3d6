"""The Responses API: ``POST /v1/responses``, ``GET/DELETE /v1/responses/{id}``,
``POST /v1/responses/{id}/cancel``, ``GET /v1/responses/{id}/input_items``.

A response is a stream like any other: its id (``resp_…``) is the stream id, each of its events
is one entry of the stream's log (``sequence_number`` = entry seq - 1), written by the producer
(:mod:`fakeai.services.producer.response_events`), and it becomes a stream through the same
path as chat (:func:`.publish.open_stream`). So resume, replay, export, observers and metrics
see it as they see chat; ``GET /v1/streams/{id}`` serves its events in the same SSE format.

- ``stream: true``: SSE with ``event: <type>``, ``id: <entry id>`` (``Last-Event-ID`` resumes
  as on chat) and no ``data: [DONE]`` (:class:`.formats.Formatter` ``named``).
- ``stream: false``: the final response object once the stream ends (an error entry: its
  error, with the status chat would answer); ``background: true`` (needs ``store``): the
  response at once, status ``queued``; it goes on without the client.
- ``GET /v1/responses/{id}``: the response folded from its log (:mod:`.response_fold`):
  ``queued``, ``in_progress`` with the output so far, ``completed``, ``incomplete``,
  ``cancelled`` or ``failed``. ``?stream=true`` streams its events from the start, or after
  the event whose ``sequence_number`` is ``starting_after`` (an integer >= 0; beyond the end of
  a finished response: 400). Decision: every stored response can be streamed again this way,
  background or not (OpenAI documents it for background responses; here every response is
  durable); a response stored with ``store: false`` is 404 on every route of this module.
- ``POST /{id}/cancel``: background responses only (else 400, as OpenAI); a running one is
  cancelled (the producer ends it with an ``e`` entry ``cancelled``) and answered with status
  ``cancelled``; an already cancelled one is answered as it is; a finished one is a 400.
- ``DELETE /{id}``: cancels it if it runs, deletes its record, log and meta hash.
- Unknown, expired, deleted or foreign ids: 404 ``Response with id '…' not found.``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fakeai.content.responses_api import response_object
from fakeai.content.responses_input import input_items
from fakeai.errors import BadRequest
from fakeai.services.edge.conversations import (
    Conversation,
    history_of,
    load,
    read_log,
    record,
    response_of,
)
from fakeai.services.edge.faults import inject
from fakeai.services.edge.formats import Formatter
from fakeai.services.edge.interrupted import StreamInterrupted
from fakeai.services.edge.openai_routes import error_status, interrupted_answer, whole_response
from fakeai.services.edge.publish import decode_body, open_stream
from fakeai.services.edge.response_fold import fold_response
from fakeai.services.edge.response_openapi import OPENAPI_PATHS, OPENAPI_SCHEMAS
from fakeai.services.edge.responses import stream_response
from fakeai.services.edge.schemas import ResponsesRequest, check_response_caps, validate
from fakeai.services.edge.state import edge_state
from fakeai.services.edge.stream_routes import request_cancel, serve_stream
from fakeai.services.edge.tenants import tenant_of
from fakeai.streams.log import Entry, Kind

__all__ = ["OPENAPI_PATHS", "OPENAPI_SCHEMAS", "routes"]

_LIST_LIMIT = 100
"""Most items one ``input_items`` page holds (OpenAI: 1 to 100, default 20)."""


async def create_response(request: Request) -> Response:
    state = edge_state(request)
    state.check_open()
    req = validate(ResponsesRequest, decode_body(await request.body()))
    check_response_caps(req, state.settings)
    tenant = tenant_of(request.scope)
    history = (
        await history_of(state, tenant, req.previous_response_id)
        if req.previous_response_id
        else []
    )
    body = req.model_dump(mode="json", exclude_none=True)
    stored = {k: v for k, v in body.items() if k != "input"}
    background = bool(req.background)
    own: dict[str, list[dict[str, Any]]] = {}

    def generation_body(sid: str) -> dict[str, Any]:
        own["input"] = input_items(body, sid)
        return {**body, "input": [*history, *own["input"]]}

    def extra(pipe: Any, sid: str) -> None:
        if req.store is not False:
            conv = Conversation(request=stored, input=own["input"], history=history)
            record(state, conv)(pipe, sid)

    opened = await open_stream(
        request,
        state,
        kind="responses",
        endpoint="chat",
        model=req.model,
        body=generation_body,
        stream=req.stream,
        seed=None,
        extra=extra,
    )
    response: Response
    if req.stream:
        response = stream_response(
            state,
            inject(opened.entries, opened.fault, closing=state.closing, named=True),
            Formatter("sse", state.settings.retry_ms, named=True),
            stream_id=opened.sid,
            model=req.model,
            disconnect_after=opened.cut,
            arrived=opened.arrived,
            release=opened.release,
        )
    elif background:
        opened.release()
        await opened.entries.aclose()
        queued = response_object(
            stored, response_id=opened.sid, created_at=opened.created_ms // 1000, model=req.model
        )
        response = JSONResponse({**queued, "status": "queued"}, headers={"X-Stream-Id": opened.sid})
    else:
        try:
            response = await whole_response(
                request, state, opened.entries, opened.sid, req.model, _final_response
            )
        finally:
            opened.release()
    response.headers.update(opened.admission.headers)
    return response


async def _final_response(entries: AsyncGenerator[list[Entry], None], sid: str) -> Response:
    """The answer of a non-streaming request: the response its events add up to."""
    headers = {"X-Stream-Id": sid}
    seen: list[Entry] = []
    try:
        async for batch in entries:
            seen += batch
            if batch and batch[-1].terminal:
                break
    except StreamInterrupted as e:
        return interrupted_answer(e, headers)
    finally:
        await entries.aclose()
    last = seen[-1] if seen else None
    if last is not None and last.kind == Kind.ERROR:
        status = error_status(last.data)
        return Response(
            last.data, status_code=status, media_type="application/json", headers=headers
        )
    return JSONResponse(fold_response(seen), headers=headers)


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise BadRequest(f"{name}: expected true or false; got {raw!r}", param=name)
    return raw in ("true", "1")


def _starting_after(request: Request) -> int | None:
    raw = request.query_params.get("starting_after")
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise BadRequest(
            f"starting_after: expected a sequence number (an integer >= 0); got {raw!r}",
            param="starting_after",
        )
    return int(raw)


async def retrieve_response(request: Request) -> Response:
    state = edge_state(request)
    sid: str = request.path_params["response_id"]
    stream = _flag(request, "stream")
    after = _starting_after(request)
    stored = await load(state, tenant_of(request.scope), sid)
    if stream:
        state.check_open()
        raw_last = None if after is None else f"{stored.created_ms}-{after + 1}"
        position = None if after is None else str(after)
        return await serve_stream(
            request, state, sid, raw_last, "sse", param="starting_after", position=position
        )
    return JSONResponse(response_of(stored, await read_log(state, sid)))


async def cancel_response(request: Request) -> Response:
    state = edge_state(request)
    sid: str = request.path_params["response_id"]
    stored = await load(state, tenant_of(request.scope), sid)
    if not stored.conversation.request.get("background"):
        raise BadRequest("Only background responses can be cancelled.", param="response_id")
    response = response_of(stored, await read_log(state, sid))
    if stored.snap.finished:
        if response.get("status") == "cancelled":
            return JSONResponse(response)
        raise BadRequest(
            f"Cannot cancel a response with status '{response.get('status')}'.",
            param="response_id",
        )
    await request_cancel(state, sid)
    return JSONResponse({**response, "status": "cancelled"})


async def delete_response(request: Request) -> Response:
    state = edge_state(request)
    sid: str = request.path_params["response_id"]
    stored = await load(state, tenant_of(request.scope), sid)
    if not stored.snap.finished:
        await request_cancel(state, sid)
    keys = state.keys
    await state.redis.delete(keys.conversation(sid), keys.chunks(sid), keys.meta(sid))
    return JSONResponse({"id": sid, "object": "response.deleted", "deleted": True})


def _list_limit(request: Request) -> int:
    raw = request.query_params.get("limit", "20")
    value = int(raw) if raw.isdigit() else 0
    if not 1 <= value <= _LIST_LIMIT:
        raise BadRequest(
            f"limit: expected an integer from 1 to {_LIST_LIMIT}; got {raw!r}", param="limit"
        )
    return value


async def list_input_items(request: Request) -> Response:
    state = edge_state(request)
    sid: str = request.path_params["response_id"]
    limit = _list_limit(request)
    order = request.query_params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise BadRequest(f"order: expected asc or desc; got {order!r}", param="order")
    stored = await load(state, tenant_of(request.scope), sid)
    items = list(stored.conversation.input)
    if order == "desc":
        items.reverse()
    after = request.query_params.get("after")
    if after:
        ids = [item.get("id") for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    page = items[:limit]
    return JSONResponse(
        {
            "object": "list",
            "data": page,
            "first_id": page[0].get("id") if page else None,
            "last_id": page[-1].get("id") if page else None,
            "has_more": len(items) > limit,
        }
    )


routes: list[BaseRoute] = [
    Route("/v1/responses", create_response, methods=["POST"]),
    Route("/v1/responses/{response_id}", retrieve_response, methods=["GET"]),
    Route("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
    Route("/v1/responses/{response_id}/cancel", cancel_response, methods=["POST"]),
    Route("/v1/responses/{response_id}/input_items", list_input_items, methods=["GET"]),
]
