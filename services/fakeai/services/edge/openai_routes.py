"""OpenAI endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``.

A request is bounded before anything is written (:func:`.schemas.check_caps`: ``n``, token
counts, tools; :func:`.schemas.check_depth`: JSON nesting; the timing headers by
``max_timing_ms``): beyond a cap it is a 400 that names the setting.

A request becomes a stream in one Redis round trip: the meta hash (status ``queued``), its
safety EXPIRE, the ``active`` index, and the :class:`GenerationRequest` on the stream's request
partition (``Keys.requests_for``) for the producers. Nothing is left half-written when Redis
refuses a write (``maxmemory`` reached: OOM) or fails:

- single server: the four commands are one MULTI/EXEC. Redis refuses the whole transaction
  when it is out of memory (EXECABORT; https://redis.io/docs/latest/develop/interact/
  transactions/#errors-inside-a-transaction), so either all of it lands or none;
- Redis Cluster: a MULTI may not span slots (the stream's bucket, the index, the partition), so
  the record (meta hash + index, one non-transactional pipeline, the nodes concurrently) is
  written first and the request is published only once the record has landed; on any failure
  the record is removed again (DEL and ZREM are allowed on a node out of memory), so there is
  never an index entry without a request, nor a request a producer could take for a stream
  the client was told failed. That costs a second round trip on a cluster.

The edge subscribes to the stream's log on the hub *before* publishing, starting at
``<created_ms>-0``: the log is the rendezvous, so no chunk can be missed and no catch-up read is
needed. The route owns that subscription and releases it however the request ends (a failed
publish, the end of the response, a client gone before the log was first read), not only
through the log iterator's ``finally`` (which does not run for an iterator closed before it
started).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import AsyncGenerator
from typing import Any

import msgspec
import redis.asyncio as aredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fakeai.errors import BadRequest, NotFound, ServiceUnavailable, error_body
from fakeai.latency_profiles import get_latency_manager
from fakeai.limits import refusal
from fakeai.services.edge.faults import (
    HEADER as FAULT,
)
from fakeai.services.edge.faults import (
    StatusFault,
    choose_fault,
    inject,
    status_error,
)
from fakeai.services.edge.formats import Formatter
from fakeai.services.edge.interrupted import StreamInterrupted
from fakeai.services.edge.limits import ALLOW
from fakeai.services.edge.reader import live_until, read_live
from fakeai.services.edge.responses import stream_response
from fakeai.services.edge.schemas import (
    MAX_DEPTH,
    ChatCompletionRequest,
    CompletionRequest,
    OpenAIRequest,
    check_caps,
    check_depth,
    too_deep,
    validate,
)
from fakeai.services.edge.state import EdgeState, edge_state
from fakeai.services.edge.tenants import OWNER_FIELD, tenant_of
from fakeai.services.edge.unavailable import redis_unavailable
from fakeai.streams import new_stream_id
from fakeai.streams.log import Entry, Kind
from fakeai.streams.meta import F
from fakeai.timeseries.names import CLIENT_DISCONNECTS
from fakeai.wire import GenerationRequest, encode
from fakeai.wire.messages import Endpoint

__all__ = ["disconnect_after", "routes"]

logger = logging.getLogger(__name__)

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


def _header_ms(request: Request, name: str, maximum: float) -> float | None:
    """A timing header: milliseconds from 0 to ``maximum`` (the setting ``max_timing_ms``);
    negative, NaN, infinite or larger values are a 400."""
    raw = request.headers.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise BadRequest(f"{name}: expected milliseconds >= 0; got {raw!r}", param=name)
    if value > maximum:
        raise BadRequest(
            f"{name}: {raw} ms is above this server's limit of {maximum:g} ms "
            "(setting max_timing_ms, FAKEAI_MAX_TIMING_MS)",
            param=name,
        )
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


def _record(
    pipe: Any, state: EdgeState, gen: GenerationRequest, kind: Endpoint, owner: str | None
) -> None:
    """The stream's record: its meta hash (and its safety EXPIRE) and its index entry."""
    keys, sid = state.keys, gen.stream_id
    pipe.hset(
        keys.meta(sid),
        mapping={
            F.STATUS: "queued",
            F.KIND: kind,
            F.MODEL: gen.model,
            F.CREATED_MS: gen.created_ms,
            F.ACCEPTED_AT: repr(gen.accepted_at),
            F.STREAM: int(gen.stream),
            **({OWNER_FIELD: owner} if owner else {}),
        },
    )
    if state.settings.retention_s:
        pipe.expire(keys.meta(sid), state.settings.retention_s + _META_SAFETY_S)
    pipe.zadd(keys.active(), {sid: gen.created_ms})


def _request(pipe: Any, state: EdgeState, gen: GenerationRequest) -> None:
    """The generation request, on the stream's partition of the requests stream."""
    # The requests stream is a work queue, not a record: entries older than any stream can
    # run (the producer ends a stream at 1 h) are trimmed, so it stays bounded.
    pipe.xadd(
        state.keys.requests_for(gen.stream_id, state.settings.request_partitions),
        {"r": encode(gen)},
        minid=gen.created_ms - _REQUESTS_KEEP_MS,
        approximate=True,
    )


async def _publish(
    state: EdgeState, gen: GenerationRequest, kind: Endpoint, owner: str | None = None
) -> None:
    """Write the stream's record and publish its request: all of it or nothing (module
    docstring). Raises what Redis raised (``OutOfMemoryError``: the app answers 503)."""
    redis = state.redis
    try:
        if not isinstance(redis, aredis.RedisCluster):
            tx = redis.pipeline(transaction=True)
            _record(tx, state, gen, kind, owner)
            _request(tx, state, gen)
            await tx.execute()
            return
        pipe = redis.pipeline(transaction=False)  # not MULTI: its keys span slots
        _record(pipe, state, gen, kind, owner)
        try:
            for result in await pipe.execute(raise_on_error=False):
                if isinstance(result, Exception):
                    raise result
            publish = redis.pipeline(transaction=False)
            _request(publish, state, gen)
            await publish.execute()
        except BaseException:
            await _unrecord(state, gen.stream_id)
            raise
    except (RedisConnectionError, RedisTimeoutError, OSError) as e:
        raise redis_unavailable() from e


async def _unrecord(state: EdgeState, sid: str) -> None:
    """Remove a stream's record whose request was not published (best effort: DEL and ZREM
    free memory, so Redis accepts them even when it is out of memory)."""
    pipe = state.redis.pipeline(transaction=False)
    pipe.delete(state.keys.meta(sid))
    pipe.zrem(state.keys.active(), sid)
    try:
        await pipe.execute(raise_on_error=False)
    except (RedisError, RedisClusterException, OSError) as e:
        logger.warning("stream %s: could not remove its record after a failed publish: %s", sid, e)


def _decode(raw: bytes) -> Any:
    """The body as JSON, nested at most :data:`MAX_DEPTH` levels; a 400 otherwise."""
    try:
        body: Any = msgspec.json.decode(raw)
    except msgspec.DecodeError as e:
        raise BadRequest(f"the request body is not valid JSON: {e}", code="invalid_json") from None
    except RecursionError:  # msgspec's own guard, near a thousand levels
        raise too_deep() from None
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:  # else it cannot nest that deep
        check_depth(body)
    return body


async def _create(request: Request, kind: Endpoint, model_cls: type[OpenAIRequest]) -> Response:
    state = edge_state(request)
    state.check_open()
    settings = state.settings
    req = validate(model_cls, _decode(await request.body()))
    check_caps(req, settings)
    _check_model(req.model)
    ttft_ms = _header_ms(request, "X-FakeAI-TTFT-Ms", settings.max_timing_ms)
    itl_ms = _header_ms(request, "X-FakeAI-ITL-Ms", settings.max_timing_ms)
    seed = _header_int(request, "X-FakeAI-Seed", minimum=-(2**63))
    cut = disconnect_after(request)
    tenant = tenant_of(request.scope)
    limiter = state.limiter
    fault = choose_fault(
        request.headers.get(FAULT),
        state.dice,
        streaming=req.stream,
        max_stall_s=settings.max_timing_ms / 1000,
    )
    if isinstance(fault, StatusFault):
        own = await limiter.headers(state.redis, tenant.name) if limiter else None
        raise status_error(fault, own)

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
        retention_s=settings.retention_s,
    )
    # The producer holds every request to the same caps (fakeai.limits); checked here too, so
    # a request it would refuse gets a 400 before any byte, not an error event after a 200.
    if (why := refusal(gen, settings)) is not None:
        raise BadRequest(why.message, param=why.param, code="invalid_value")
    admission = await limiter.admit(state.redis, tenant.name, sid) if limiter else ALLOW
    admission.raise_if_refused()
    start = f"{created_ms}-0"
    key = state.keys.chunks(sid)
    sub = state.hub.subscribe(key, start, settings.client_buffer)
    entries = read_live(
        state.redis,
        state.hub,
        sub,
        key=key,
        created_ms=created_ms,
        after_seq=0,
        heartbeat_s=settings.heartbeat_s if req.stream else None,
        ends_at=live_until(created_ms, settings.max_stream_s),
    )
    try:
        await _publish(state, gen, kind, tenant.owner)
    except BaseException:
        state.hub.unsubscribe(sub)
        if limiter:
            await limiter.release(state.redis, tenant.name, sid)
        raise
    release = functools.partial(state.hub.unsubscribe, sub)
    response: Response
    if req.stream:
        response = stream_response(
            state,
            inject(entries, fault, closing=state.closing),
            Formatter("sse", settings.retry_ms),
            stream_id=sid,
            model=req.model,
            disconnect_after=cut,
            arrived=arrived,
            release=release,
        )
    else:
        try:
            response = await _whole_response(request, state, entries, sid, req.model)
        finally:
            release()  # also when the wait was cancelled before it first read the log
    response.headers.update(admission.headers)
    return response


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
        if e.code == "timeout":  # the stream outlived max_stream_s without an end
            body = error_body(e.message, "server_error", code=e.code)
            return JSONResponse(body, status_code=504, headers=headers)
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
