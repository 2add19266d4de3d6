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

SSE on this endpoint starts with a priming event (``id:`` = the position resumed from, and
``retry:``), so a client that drops before its first chunk still has a Last-Event-ID; not on a
Responses API stream (``resp_…``), whose events are named and whose clients (the openai SDKs)
parse the data of every event.

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

import functools
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import OutOfMemoryError, RedisClusterException, RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fakeai.errors import BadRequest, NotFound, ServiceUnavailable, StreamExpired
from fakeai.services.edge.faults import (
    HEADER as FAULT,
)
from fakeai.services.edge.faults import (
    StatusFault,
    choose_fault,
    inject,
    status_error,
)
from fakeai.services.edge.formats import Format, Formatter, choose_format
from fakeai.services.edge.publish import disconnect_after
from fakeai.services.edge.reader import live_until, parse_pace, read_finished, read_live
from fakeai.services.edge.responses import stream_response
from fakeai.services.edge.state import EdgeState, edge_state
from fakeai.services.edge.tenants import OWNER_FIELD, can_see, tenant_of, visible
from fakeai.services.edge.unavailable import out_of_memory, redis_unavailable
from fakeai.streams import ResumeVerdict, created_ms_of, decide_resume, parse_entry_id
from fakeai.streams.log import PAGE, Entry, parse_entry
from fakeai.streams.meta import F, StreamMeta
from fakeai.streams.positions import is_response_id
from fakeai.wire import CancelSignal, encode

__all__ = ["Snapshot", "gone", "request_cancel", "routes", "serve_stream", "snapshot"]

_CANCELS_MAXLEN = 10_000
"""Cancel signals are only interesting while fresh: keep the stream short."""


def _created_ms(stream_id: str) -> int:
    created = created_ms_of(stream_id)
    if created is None:
        raise NotFound(
            f"stream {stream_id!r} not found", param="stream_id", code="stream_not_found"
        )
    return created


def gone(state: EdgeState, stream_id: str, created_ms: int) -> Exception:
    """404 or 410 for a stream whose keys are not in Redis."""
    retention = state.settings.retention_s
    if retention and time.time() * 1000 > created_ms + retention * 1000:
        return StreamExpired(
            f"stream {stream_id} has expired (streams are kept {retention} s)",
            param="stream_id",
        )
    return NotFound(f"stream {stream_id} not found", param="stream_id", code="stream_not_found")


class Snapshot:
    """What one round trip tells about a stream (:func:`_snapshot`)."""

    __slots__ = ("exists", "last", "length", "meta", "page")

    def __init__(
        self,
        meta: dict[bytes, bytes],
        exists: bool,
        last: Entry | None,
        length: int,
        page: list[Entry] | None,
    ) -> None:
        self.meta = meta
        self.exists = exists
        """The log or the meta hash is there."""
        self.last = last
        """The newest entry of the log."""
        self.length = length
        self.page = page
        """The first XRANGE page after the position asked for (None: not asked)."""

    @property
    def finished(self) -> bool:
        return self.last is not None and self.last.terminal


async def snapshot(state: EdgeState, stream_id: str, after: str | None = None) -> Snapshot:
    """Meta hash, log exists, newest entry, log length and, with ``after``, the first page of
    entries after it: one round trip (one slot: the stream's bucket)."""
    key = state.keys.chunks(stream_id)
    pipe = state.redis.pipeline(transaction=False)
    pipe.hgetall(state.keys.meta(stream_id))
    pipe.exists(key)
    pipe.xrevrange(key, max="+", min="-", count=1)
    pipe.xlen(key)
    if after is not None:
        pipe.xrange(key, min=f"({after}", max="+", count=PAGE)
    meta, exists, rows, length, *more = await pipe.execute()
    last = parse_entry(*rows[0]) if rows else None
    page = [parse_entry(i, f) for i, f in more[0]] if more else None
    return Snapshot(meta, bool(meta) or bool(exists), last, int(length), page)


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
    created_ms = _created_ms(sid)
    pace = parse_pace(request.query_params.get("pace"))
    cut = disconnect_after(request)

    # The first page after the client's position comes with the snapshot (module docstring).
    hint = parse_entry_id(raw_last) if raw_last else None
    after_seq = hint.seq if hint is not None and hint.ms == created_ms else 0
    fault = choose_fault(
        request.headers.get(FAULT),
        None,
        streaming=True,
        max_stall_s=state.settings.max_timing_ms / 1000,
    )
    snap = await snapshot(state, sid, after=f"{created_ms}-{after_seq}")
    last, finished = snap.last, snap.finished
    verdict, pos = decide_resume(
        raw_last,
        created_ms=created_ms,
        exists=snap.exists and visible(tenant_of(request.scope), snap.meta),
        last_seq=last.seq if last else None,
        finished=finished,
    )
    if verdict is ResumeVerdict.EXPIRED:
        raise gone(state, sid, created_ms)
    if verdict is not ResumeVerdict.OK:
        reason = {
            ResumeVerdict.MALFORMED: "is not an event id of the form <ms>-<seq>",
            ResumeVerdict.FOREIGN: "belongs to another stream",
            ResumeVerdict.BEYOND: "is past the end of this finished stream, whose last "
            f"event id is {last.id.decode() if last else None}",
        }[verdict]
        shown = f"{param} {position!r}" if position is not None else f"Last-Event-ID {raw_last!r}"
        raise BadRequest(f"{shown} {reason}", param=param, code="invalid_event_id")
    page = snap.page if pos.seq == after_seq else None
    if isinstance(fault, StatusFault):
        raise status_error(fault)

    meta = StreamMeta.from_hash(snap.meta)
    key = state.keys.chunks(sid)
    named = is_response_id(sid)
    heartbeat = state.settings.heartbeat_s if fmt == "sse" else None
    release: Callable[[], None] | None = None
    if finished:
        base = int(meta.accepted_at * 1e6) if meta.accepted_at and pos.seq == 0 else None
        entries = read_finished(
            state.redis,
            key,
            created_ms=created_ms,
            after_seq=pos.seq,
            pace=pace,
            base_t_us=base,
            closing=state.closing,
            heartbeat_s=heartbeat,
            first_page=page,
        )
    else:
        start = last.id.decode() if last is not None else f"{created_ms}-0"
        sub = state.hub.subscribe(key, start, state.settings.client_buffer)
        # The response releases it whenever it ends, even if the log was never read.
        release = functools.partial(state.hub.unsubscribe, sub)
        entries = read_live(
            state.redis,
            state.hub,
            sub,
            key=key,
            created_ms=created_ms,
            after_seq=pos.seq,
            heartbeat_s=heartbeat,
            ends_at=live_until(created_ms, state.settings.max_stream_s),
            first_page=page,
        )
    return stream_response(
        state,
        inject(entries, fault, closing=state.closing),
        Formatter(fmt, state.settings.retry_ms, named=named),
        stream_id=sid,
        model=meta.model or "unknown",
        # No priming event on a Responses stream: the openai SDKs parse every event's data.
        prime=None if named else str(pos),
        disconnect_after=cut,
        release=release,
    )


async def stream_info(request: Request) -> Response:
    state = edge_state(request)
    sid: str = request.path_params["stream_id"]
    created_ms = _created_ms(sid)
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
    created_ms = _created_ms(sid)
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
