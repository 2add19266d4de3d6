"""Stream endpoints: resume and replay, info, the active list, cancel; health and readiness.

``GET /v1/streams/{id}`` decides in one round trip (one pipeline: meta hash, log existence,
newest entry, and the first page of entries after the client's position) with the pure
:func:`fakeai.streams.decide_resume`, before the first byte goes out, so a Redis that fails
there is a 503, never an error event inside a 200:

- malformed, foreign ``Last-Event-ID`` -> 400; beyond the end of a finished stream -> 400
  naming the stream's last event id. Beyond the end of a stream still running: the response
  waits while the stream could still reach that id and ends with a ``beyond_end`` error event
  if the terminal entry comes first (:mod:`.reader`);
- a finished log (terminal entry present) is served by XRANGE alone, at ``?pace=`` if asked
  (``original``, ``fast`` or a factor from 0.01 to 1000; else 400); a running one through
  the hub (``pace`` is ignored: live is live), which ends the response with a ``timeout``
  error event once ``max_stream_s`` has passed since the stream's creation without a
  terminal entry.

404 or 410, for the stream endpoints (``GET``, ``/info``, ``/cancel``): an id that is not of
our form, or whose keys are not in Redis, is 404 ``stream_not_found`` (never seen here)
unless the creation time embedded in the id (:func:`fakeai.streams.created_ms_of`) is older
than the retention: then it may have existed and expired, and it is 410 ``stream_expired``.
With retention 0 (keep forever) keys never expire, so a missing stream is always 404.

``format=text`` of a stream that carries audio or images (speech, realtime, images) says what
it leaves out in ``X-FakeAI-Text-Omitted`` (:mod:`.formats`: speech and images have no text,
so their text body is empty).

SSE on this endpoint starts with a priming event (``id:`` = the position resumed from, and
``retry:``), so a client that drops before its first chunk still has a Last-Event-ID; not on a
stream of typed events (Responses API, realtime, speech, transcription, images:
:func:`fakeai.streams.positions.is_event_stream`), whose events are named and whose clients
(the openai SDKs) parse the data of every event.

:func:`open_log` is that decision and the reader it opens, for any transport (the realtime
WebSocket resumes a response with it).

On a Redis Cluster every endpoint works unchanged: no command names keys of two slots. A
stream's meta hash and log share its bucket's hash tag, so the snapshot pipeline goes to one
node; the active list's per-stream look-ups and cancel's two writes (the ``cancels`` stream
and the meta hash) are non-transactional pipelines, which ``RedisCluster`` splits per node.

``POST /v1/streams/{id}/cancel`` answers 200 in every known case: ``{"status": "cancelling"}``
after writing the cancel signal for a running stream, or the final status (and
``"cancel_requested": false``) for a finished one, so a retried cancel is harmless.

``GET /readyz`` is 200 only when this edge can serve a new stream: Redis answers, accepts
writes, and at least one producer holds a live lease. Otherwise 503 with ``Retry-After`` and
an OpenAI-shaped body whose ``code`` and message say why: ``redis_unavailable``,
``redis_out_of_memory`` (a write was refused: ``maxmemory`` reached), ``no_producers`` (no
member of ``Keys.producers()`` scored after now). Whether writes are accepted is probed with
``ZADD XX`` of a member that is never there, a no-op that Redis refuses (before running it)
exactly when it refuses writes for lack of memory, on the nodes holding the active index,
the producers' leases and each request partition. A 200 carries ``X-FakeAI-Hub-Keys``,
``X-FakeAI-Hub-Subscriptions`` and ``X-FakeAI-Open-Responses``: what the edge holds for open
responses (diagnostics).
"""

from __future__ import annotations

import time
from typing import Any

from redis.exceptions import OutOfMemoryError, RedisClusterException, RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fakeai.errors import BadRequest, ServiceUnavailable
from fakeai.services.edge.faults import (
    HEADER as FAULT,
)
from fakeai.services.edge.faults import (
    StatusFault,
    choose_fault,
    inject,
    status_error,
)
from fakeai.services.edge.formats import Format, Formatter, choose_format, text_omits
from fakeai.services.edge.publish import disconnect_after
from fakeai.services.edge.reader import parse_pace
from fakeai.services.edge.responses import stream_response
from fakeai.services.edge.state import EdgeState, edge_state
from fakeai.services.edge.stream_log import (
    OpenedLog,
    Snapshot,
    created_ms_or_404,
    gone,
    open_log,
    snapshot,
)
from fakeai.services.edge.tenants import OWNER_FIELD, can_see, tenant_of, visible
from fakeai.services.edge.unavailable import out_of_memory, redis_unavailable
from fakeai.streams.meta import F, StreamMeta
from fakeai.streams.positions import is_event_stream
from fakeai.wire import CancelSignal, encode

__all__ = [
    "OpenedLog",
    "Snapshot",
    "gone",
    "open_log",
    "request_cancel",
    "routes",
    "serve_stream",
    "snapshot",
]

TEXT_OMITTED = "X-FakeAI-Text-Omitted"
"""On ``format=text``: what the text leaves out of the stream (``audio``, ``image``;
:func:`.formats.text_omits`)."""
_CANCELS_MAXLEN = 10_000
"""Cancel signals are only interesting while fresh: keep the stream short."""


async def get_stream(request: Request) -> Response:
    state = edge_state(request)
    state.check_open()
    sid: str = request.path_params["stream_id"]
    fmt = choose_format(request.query_params.get("format"), request.headers.get("accept"))
    raw_last = request.headers.get("last-event-id")
    if raw_last is None:
        raw_last = request.query_params.get("last_event_id")
    return await serve_stream(request, state, sid, raw_last, fmt)


async def serve_stream(
    request: Request,
    state: EdgeState,
    sid: str,
    raw_last: str | None,
    fmt: Format,
    *,
    param: str = "last_event_id",
    position: str | None = None,
) -> Response:
    """The stream ``sid`` after the event id ``raw_last`` (from its start when None), in
    ``fmt``: the resume and replay of the module docstring. ``param`` and ``position`` (what
    the client sent, when it was not an event id) name the position in 400 answers."""
    pace = parse_pace(request.query_params.get("pace"))
    cut = disconnect_after(request)
    fault = choose_fault(
        request.headers.get(FAULT),
        None,
        streaming=True,
        max_stall_s=state.settings.max_timing_ms / 1000,
    )
    log = await open_log(
        state,
        sid,
        raw_last,
        tenant_of(request.scope),
        pace=pace,
        heartbeat_s=state.settings.heartbeat_s if fmt == "sse" else None,
        param=param,
        position=position,
    )
    if isinstance(fault, StatusFault):
        log.release()
        raise status_error(fault)
    named = is_event_stream(sid)
    response = stream_response(
        state,
        inject(log.entries, fault, closing=state.closing, named=named),
        Formatter(fmt, state.settings.retry_ms, named=named),
        stream_id=sid,
        model=log.meta.model or "unknown",
        # No priming event on a stream of typed events: the openai SDKs parse every event's
        # data.
        prime=None if named else str(log.position),
        disconnect_after=cut,
        release=log.release,
    )
    omitted = text_omits(sid) if fmt == "text" else None
    if omitted is not None:
        response.headers[TEXT_OMITTED] = omitted
    return response


async def stream_info(request: Request) -> Response:
    state = edge_state(request)
    sid: str = request.path_params["stream_id"]
    created_ms = created_ms_or_404(sid)
    snap = await snapshot(state, sid)
    if not snap.exists or not visible(tenant_of(request.scope), snap.meta):
        raise gone(state, sid, created_ms)
    m, last, length = StreamMeta.from_hash(snap.meta), snap.last, snap.length
    error = {"code": m.error_code, "message": m.error_message} if m.error_code else None
    return JSONResponse(
        {
            "id": sid,
            "object": "stream",
            "status": m.status,
            "model": m.model,
            "endpoint": m.kind,
            "stream": m.stream,
            "created": created_ms // 1000,
            "created_ms": created_ms,
            "chunks": length,
            "last_event_id": last.id.decode() if last else None,
            "finished": bool(last and last.terminal),
            "timings": {
                "accepted_at": m.accepted_at,
                "started_at": m.started_at,
                "first_chunk_at": m.first_chunk_at,
                "finished_at": m.finished_at,
            },
            "finish_reason": m.finish_reason,
            "usage": {
                "prompt_tokens": m.prompt_tokens,
                "completion_tokens": m.completion_tokens,
            },
            "error": error,
            "cancel_requested": m.cancel_requested,
        }
    )


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "100")
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= 1000:
        raise BadRequest(f"limit: expected an integer from 1 to 1000; got {raw!r}", param="limit")
    return value


async def list_streams(request: Request) -> Response:
    state = edge_state(request)
    limit = _limit(request)
    rows: Any = await state.redis.zrevrange(state.keys.active(), 0, limit - 1, withscores=True)
    pipe = state.redis.pipeline(transaction=False)
    for sid, _ in rows:
        pipe.hmget(state.keys.meta(sid.decode()), [F.MODEL, F.STATUS, F.KIND, OWNER_FIELD])
    metas: Any = await pipe.execute() if rows else []
    data: list[dict[str, Any]] = []
    tenant = tenant_of(request.scope)
    for (sid, score), (model, status, kind, owner) in zip(rows, metas, strict=True):
        if not can_see(tenant, owner.decode() if owner else None):
            continue
        data.append(
            {
                "id": sid.decode(),
                "model": model.decode() if model else None,
                "status": status.decode() if status else "unknown",
                "endpoint": kind.decode() if kind else None,
                "created_ms": int(score),
            }
        )
    return JSONResponse({"object": "list", "data": data})


async def cancel_stream(request: Request) -> Response:
    state = edge_state(request)
    sid: str = request.path_params["stream_id"]
    created_ms = created_ms_or_404(sid)
    snap = await snapshot(state, sid)
    if not snap.exists or not visible(tenant_of(request.scope), snap.meta):
        raise gone(state, sid, created_ms)
    m = StreamMeta.from_hash(snap.meta)
    if m.finished or snap.finished:
        return JSONResponse({"id": sid, "status": m.status, "cancel_requested": False})
    await request_cancel(state, sid)
    return JSONResponse({"id": sid, "status": "cancelling", "cancel_requested": True})


async def request_cancel(state: EdgeState, sid: str) -> None:
    """Ask the producers to stop stream ``sid``: the cancel signal, and the meta flag that a
    producer yet to start the stream reads."""
    signal = CancelSignal(stream_id=sid, reason="cancelled", at=time.time())
    pipe = state.redis.pipeline(transaction=False)
    pipe.xadd(state.keys.cancels(), {"c": encode(signal)}, maxlen=_CANCELS_MAXLEN, approximate=True)
    pipe.hset(state.keys.meta(sid), F.CANCEL_REQUESTED, "1")
    await pipe.execute()


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


_PROBE = b""
"""The member ``/readyz`` offers ``ZADD XX``: never a stream id nor a producer, so a no-op."""


async def readyz(request: Request) -> Response:
    """200 when a new stream can be served, else 503 naming why (module docstring)."""
    state = edge_state(request)
    state.check_open()
    keys = state.keys
    now_ms = int(time.time() * 1000)
    pipe = state.redis.pipeline(transaction=False)
    pipe.zcount(keys.producers(), f"({now_ms}", "+inf")
    probed = [
        keys.active(),
        keys.producers(),
        *keys.all_requests(state.settings.request_partitions),
    ]
    for key in probed:
        pipe.zadd(key, {_PROBE: 0}, xx=True)
    try:
        producers, *probes = await pipe.execute(raise_on_error=False)
    except (RedisError, RedisClusterException, OSError) as e:
        raise redis_unavailable(f"not reachable: {e}") from e
    if isinstance(producers, Exception):
        raise redis_unavailable(f"{producers}")
    # A probe on a request partition answers WRONGTYPE (it is a stream) when writes are
    # accepted: Redis refuses a command for memory before it looks at the key.
    if any(isinstance(r, OutOfMemoryError) for r in probes):
        raise out_of_memory()
    if not producers:
        raise ServiceUnavailable(
            f"no producer holds a live lease (no member of {keys.producers()} expires after "
            "now): new requests would wait for one; start a producer (fakeai-streams producer)",
            code="no_producers",
            retry_after_s=1,
        )
    hub = state.hub
    return JSONResponse(
        {"status": "ready", "producers": int(producers)},
        # What this edge holds for open responses: counts that stay up while no client is
        # connected are a leak (infra/scripts/edge_rss_cycles.py prints them).
        headers={
            "X-FakeAI-Hub-Keys": str(hub.keys),
            "X-FakeAI-Hub-Subscriptions": str(hub.subscriptions),
            "X-FakeAI-Open-Responses": str(state.responses),
        },
    )


routes: list[BaseRoute] = [
    Route("/v1/streams", list_streams, methods=["GET"]),
    Route("/v1/streams/{stream_id}", get_stream, methods=["GET"]),
    Route("/v1/streams/{stream_id}/info", stream_info, methods=["GET"]),
    Route("/v1/streams/{stream_id}/cancel", cancel_stream, methods=["POST"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
