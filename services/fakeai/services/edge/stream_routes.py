"""Stream endpoints: resume and replay, info, the active list, cancel; health and readiness.

``GET /v1/streams/{id}`` decides in one pipeline (meta hash, log existence, newest entry) with
the pure :func:`fakeai.streams.decide_resume`:

- unknown id format -> 404; malformed, foreign or beyond-the-end ``Last-Event-ID`` -> 400;
- keys gone -> 410 ``stream_expired`` once ``created + retention`` has passed (the stream
  existed and expired), else 404 (never existed here). With retention 0 (keep forever) keys
  never expire, so a missing stream is 404;
- a finished log (terminal entry present) is served by XRANGE alone, at ``?pace=`` if asked;
  a running one through the hub (``pace`` is ignored: live is live).

SSE on this endpoint starts with a priming event (``id:`` = the position resumed from, and
``retry:``), so a client that drops before its first chunk still has a Last-Event-ID.

On a Redis Cluster every endpoint works unchanged: no command names keys of two slots. A
stream's meta hash and log share its bucket's hash tag, so the snapshot pipeline goes to one
node; the active list's per-stream look-ups and cancel's two writes (the ``cancels`` stream
and the meta hash) are non-transactional pipelines, which ``RedisCluster`` splits per node.

``POST /v1/streams/{id}/cancel`` answers 200 in every known case: ``{"status": "cancelling"}``
after writing the cancel signal for a running stream, or the final status (and
``"cancel_requested": false``) for a finished one, so a retried cancel is harmless.
"""

from __future__ import annotations

import time
from typing import Any

from redis.exceptions import RedisClusterException, RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fakeai.errors import BadRequest, NotFound, ServiceUnavailable, StreamExpired
from fakeai.services.edge.formats import Formatter, choose_format
from fakeai.services.edge.openai_routes import disconnect_after
from fakeai.services.edge.reader import parse_pace, read_finished, read_live
from fakeai.services.edge.responses import stream_response
from fakeai.services.edge.state import EdgeState, edge_state
from fakeai.streams import ResumeVerdict, created_ms_of, decide_resume
from fakeai.streams.log import Entry, parse_entry
from fakeai.streams.meta import F, StreamMeta
from fakeai.wire import CancelSignal, encode

__all__ = ["routes"]

_CANCELS_MAXLEN = 10_000
"""Cancel signals are only interesting while fresh: keep the stream short."""


def _created_ms(stream_id: str) -> int:
    created = created_ms_of(stream_id)
    if created is None:
        raise NotFound(
            f"stream {stream_id!r} not found", param="stream_id", code="stream_not_found"
        )
    return created


def _gone(state: EdgeState, stream_id: str, created_ms: int) -> Exception:
    """404 or 410 for a stream whose keys are not in Redis."""
    retention = state.settings.retention_s
    if retention and time.time() * 1000 > created_ms + retention * 1000:
        return StreamExpired(
            f"stream {stream_id} has expired (streams are kept {retention} s)",
            param="stream_id",
        )
    return NotFound(f"stream {stream_id} not found", param="stream_id", code="stream_not_found")


async def _snapshot(
    state: EdgeState, stream_id: str
) -> tuple[dict[bytes, bytes], bool, Entry | None, int]:
    """Meta hash, log exists, newest entry, log length: one round trip (one slot: the
    stream's bucket)."""
    key = state.keys.chunks(stream_id)
    pipe = state.redis.pipeline(transaction=False)
    pipe.hgetall(state.keys.meta(stream_id))
    pipe.exists(key)
    pipe.xrevrange(key, max="+", min="-", count=1)
    pipe.xlen(key)
    meta, exists, rows, length = await pipe.execute()
    last = parse_entry(*rows[0]) if rows else None
    return meta, bool(exists), last, int(length)


async def get_stream(request: Request) -> Response:
    state = edge_state(request)
    state.check_open()
    sid: str = request.path_params["stream_id"]
    created_ms = _created_ms(sid)
    fmt = choose_format(request.query_params.get("format"), request.headers.get("accept"))
    pace = parse_pace(request.query_params.get("pace"))
    cut = disconnect_after(request)
    raw_last = request.headers.get("last-event-id")
    if raw_last is None:
        raw_last = request.query_params.get("last_event_id")

    meta_raw, log_exists, last, _ = await _snapshot(state, sid)
    finished = last is not None and last.terminal
    verdict, pos = decide_resume(
        raw_last,
        created_ms=created_ms,
        exists=bool(meta_raw) or log_exists,
        last_seq=last.seq if last else None,
        finished=finished,
    )
    if verdict is ResumeVerdict.EXPIRED:
        raise _gone(state, sid, created_ms)
    if verdict is not ResumeVerdict.OK:
        reason = {
            ResumeVerdict.MALFORMED: "is not an event id of the form <ms>-<seq>",
            ResumeVerdict.FOREIGN: "belongs to another stream",
            ResumeVerdict.BEYOND: "is past the end of this finished stream",
        }[verdict]
        raise BadRequest(
            f"Last-Event-ID {raw_last!r} {reason}", param="last_event_id", code="invalid_event_id"
        )

    meta = StreamMeta.from_hash(meta_raw)
    key = state.keys.chunks(sid)
    heartbeat = state.settings.heartbeat_s if fmt == "sse" else None
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
        )
    else:
        start = last.id.decode() if last is not None else f"{created_ms}-0"
        sub = state.hub.subscribe(key, start, state.settings.client_buffer)
        entries = read_live(
            state.redis,
            state.hub,
            sub,
            key=key,
            created_ms=created_ms,
            after_seq=pos.seq,
            heartbeat_s=heartbeat,
        )
    return stream_response(
        state,
        entries,
        Formatter(fmt, state.settings.retry_ms),
        stream_id=sid,
        model=meta.model or "unknown",
        prime=str(pos),
        disconnect_after=cut,
    )


async def stream_info(request: Request) -> Response:
    state = edge_state(request)
    sid: str = request.path_params["stream_id"]
    created_ms = _created_ms(sid)
    meta_raw, log_exists, last, length = await _snapshot(state, sid)
    if not meta_raw and not log_exists:
        raise _gone(state, sid, created_ms)
    m = StreamMeta.from_hash(meta_raw)
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
        pipe.hmget(state.keys.meta(sid.decode()), [F.MODEL, F.STATUS, F.KIND])
    metas: Any = await pipe.execute() if rows else []
    data: list[dict[str, Any]] = []
    for (sid, score), (model, status, kind) in zip(rows, metas, strict=True):
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
    meta_raw, log_exists, last, _ = await _snapshot(state, sid)
    if not meta_raw and not log_exists:
        raise _gone(state, sid, created_ms)
    m = StreamMeta.from_hash(meta_raw)
    if m.finished or (last is not None and last.terminal):
        return JSONResponse({"id": sid, "status": m.status, "cancel_requested": False})
    signal = CancelSignal(stream_id=sid, reason="cancelled", at=time.time())
    pipe = state.redis.pipeline(transaction=False)
    pipe.xadd(state.keys.cancels(), {"c": encode(signal)}, maxlen=_CANCELS_MAXLEN, approximate=True)
    pipe.hset(state.keys.meta(sid), F.CANCEL_REQUESTED, "1")
    await pipe.execute()
    return JSONResponse({"id": sid, "status": "cancelling", "cancel_requested": True})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = edge_state(request)
    state.check_open()
    try:
        await state.redis.ping()
    except (RedisError, RedisClusterException, OSError) as e:
        raise ServiceUnavailable(
            f"Redis is not reachable: {e}", code="redis_unavailable", retry_after_s=1
        ) from e
    return JSONResponse({"status": "ready"})


routes: list[BaseRoute] = [
    Route("/v1/streams", list_streams, methods=["GET"]),
    Route("/v1/streams/{stream_id}", get_stream, methods=["GET"]),
    Route("/v1/streams/{stream_id}/info", stream_info, methods=["GET"]),
    Route("/v1/streams/{stream_id}/cancel", cancel_stream, methods=["POST"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
