"""OpenAI endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``.

A request becomes a stream in one Redis round trip (one pipeline): the meta hash (status
``queued``), its safety EXPIRE, the ``active`` index, and the :class:`GenerationRequest` on the
stream's request partition (``Keys.requests_for``) for the producers. The pipeline is not a
transaction: its keys sit in up to three slots (the stream's bucket, the index, the partition),
and a Redis Cluster refuses a MULTI across slots; ``RedisCluster`` sends it as one pipeline per
node, the nodes concurrently. The edge subscribes to the stream's log on the hub *before*
publishing, starting at ``<created_ms>-0``: the log is the rendezvous, so no chunk can be missed
and no catch-up read is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncGenerator
from typing import Any

import msgspec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fakeai.errors import BadRequest, NotFound, ServiceUnavailable
from fakeai.latency_profiles import get_latency_manager
from fakeai.services.edge.formats import Formatter
from fakeai.services.edge.interrupted import StreamInterrupted
from fakeai.services.edge.reader import read_live
from fakeai.services.edge.responses import stream_response
from fakeai.services.edge.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    OpenAIRequest,
    validate,
)
from fakeai.services.edge.state import EdgeState, edge_state
from fakeai.streams import new_stream_id
from fakeai.streams.log import Entry, Kind
from fakeai.streams.meta import F
from fakeai.timeseries.names import CLIENT_DISCONNECTS
from fakeai.wire import GenerationRequest, encode
from fakeai.wire.messages import Endpoint

__all__ = ["routes"]

_REQUESTS_KEEP_MS = 2 * 3600 * 1000
_META_SAFETY_S = 3600
"""The meta hash outlives retention by this much, in case no producer ever finishes it."""

# HTTP status for a non-streaming request whose stream ended with an error entry.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "invalid_value": 400,
    "model_not_found": 404,
    "cancelled": 409,
    "rate_limit_exceeded": 429,
    "timeout": 504,
}
_STARTED = int(time.time())


def _header_float(request: Request, name: str) -> float | None:
    raw = request.headers.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise BadRequest(f"{name}: expected milliseconds >= 0; got {raw!r}", param=name)
    return value


def _header_int(request: Request, name: str, *, minimum: int) -> int | None:
    raw = request.headers.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise BadRequest(f"{name}: expected an integer >= {minimum}; got {raw!r}", param=name)
    return value


def disconnect_after(request: Request) -> int | None:
    """``X-FakeAI-Disconnect-After: N`` (N >= 1), shared with the stream routes."""
    return _header_int(request, "X-FakeAI-Disconnect-After", minimum=1)


def _check_model(model: str) -> None:
    try:
        get_latency_manager().get_profile(model, strict=True)
    except ValueError as e:
        raise NotFound(str(e), param="model", code="model_not_found") from None


async def _publish(state: EdgeState, gen: GenerationRequest, kind: Endpoint) -> None:
    keys, sid = state.keys, gen.stream_id
    pipe = state.redis.pipeline(transaction=False)  # not MULTI: its keys span slots
    pipe.hset(
        keys.meta(sid),
        mapping={
            F.STATUS: "queued",
            F.KIND: kind,
            F.MODEL: gen.model,
            F.CREATED_MS: gen.created_ms,
            F.ACCEPTED_AT: repr(gen.accepted_at),
            F.STREAM: int(gen.stream),
        },
    )
    if state.settings.retention_s:
        pipe.expire(keys.meta(sid), state.settings.retention_s + _META_SAFETY_S)
    pipe.zadd(keys.active(), {sid: gen.created_ms})
    # The requests stream is a work queue, not a record: entries older than any stream can
    # run (the producer ends a stream at 1 h) are trimmed, so it stays bounded.
    pipe.xadd(
        keys.requests_for(sid, state.settings.request_partitions),
        {"r": encode(gen)},
        minid=gen.created_ms - _REQUESTS_KEEP_MS,
        approximate=True,
    )
    try:
        await pipe.execute()
    except (RedisConnectionError, RedisTimeoutError, OSError) as e:
        raise ServiceUnavailable(
            "Redis is unavailable; retry later", code="redis_unavailable", retry_after_s=1
        ) from e


async def _create(request: Request, kind: Endpoint, model_cls: type[OpenAIRequest]) -> Response:
    state = edge_state(request)
    state.check_open()
    raw = await request.body()
    try:
        body: Any = msgspec.json.decode(raw)
    except msgspec.DecodeError as e:
        raise BadRequest(f"the request body is not valid JSON: {e}", code="invalid_json") from None
    req = validate(model_cls, body)
    _check_model(req.model)
    ttft_ms = _header_float(request, "X-FakeAI-TTFT-Ms")
    itl_ms = _header_float(request, "X-FakeAI-ITL-Ms")
    seed = _header_int(request, "X-FakeAI-Seed", minimum=-(2**63))
    cut = disconnect_after(request)

    arrived: float = request.scope.get("state", {}).get("arrived") or time.time()
    created_ms = int(time.time() * 1000)
    sid = new_stream_id(kind, created_ms)
    gen = GenerationRequest(
        stream_id=sid,
        endpoint=kind,
        model=req.model,
        created_ms=created_ms,
        accepted_at=arrived,
        body=req.model_dump(mode="json", exclude_none=True),
        stream=req.stream,
        ttft_ms=ttft_ms,
        itl_ms=itl_ms,
        seed=seed if seed is not None else req.seed,
        retention_s=state.settings.retention_s,
    )
    start = f"{created_ms}-0"
    key = state.keys.chunks(sid)
    sub = state.hub.subscribe(key, start, state.settings.client_buffer)
    entries = read_live(
        state.redis,
        state.hub,
        sub,
        key=key,
        created_ms=created_ms,
        after_seq=0,
        heartbeat_s=state.settings.heartbeat_s if req.stream else None,
    )
    try:
        await _publish(state, gen, kind)
    except BaseException:
        state.hub.unsubscribe(sub)
        raise
    if req.stream:
        return stream_response(
            state,
            entries,
            Formatter("sse", state.settings.retry_ms),
            stream_id=sid,
            model=req.model,
            disconnect_after=cut,
            arrived=arrived,
        )
    return await _whole_response(request, state, entries, sid, req.model)


async def _whole_response(
    request: Request,
    state: EdgeState,
    entries: AsyncGenerator[list[Entry], None],
    sid: str,
    model: str,
) -> Response:
    """Wait for the ``r`` entry (or the error entry) of a non-streaming request.

    The wait races the client: a client that goes away stops the wait (its stream goes on).
    """
    waiter = asyncio.create_task(_first_response(entries, sid))
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


async def _first_response(entries: AsyncGenerator[list[Entry], None], sid: str) -> Response:
    headers = {"X-Stream-Id": sid}
    try:
        async for batch in entries:
            for e in batch:
                if e.kind == Kind.RESPONSE:
                    return Response(e.data, media_type="application/json", headers=headers)
                if e.kind == Kind.ERROR:
                    status = _ERROR_STATUS.get(_error_code(e.data) or "", 500)
                    return Response(
                        e.data, status_code=status, media_type="application/json", headers=headers
                    )
                if e.kind == Kind.DONE:
                    break
    except StreamInterrupted as e:
        raise ServiceUnavailable(e.message, code=e.code, retry_after_s=1) from None
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
    data = [
        {"id": m, "object": "model", "created": _STARTED, "owned_by": "fakeai"}
        for m in get_latency_manager().list_models()
    ]
    return JSONResponse({"object": "list", "data": data})


routes: list[BaseRoute] = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
]
