"""A validated generation request becomes a stream: admission, record, publish, subscription.

Every generation endpoint (chat, completions, the Responses API) goes through
:func:`open_stream`, which does, in order: the timing headers (bounded by ``max_timing_ms``), the
fault header or draw, the model check, the producer's caps (:func:`fakeai.limits.refusal`: a
400 before any byte rather than an error event after a 200), the tenant's admission, the hub
subscription, and the publish. What it returns (:class:`Opened`) holds the log iterator and
the subscription, which the caller's response releases however it ends.

A request becomes a stream in one Redis round trip: the meta hash (status ``queued``), its
safety EXPIRE, the ``active`` index, anything the endpoint adds to the record (the Responses
API's stored conversation, in the stream's hash tag), and the :class:`GenerationRequest` on the
stream's request partition (``Keys.requests_for``) for the producers. Nothing is left
half-written when Redis refuses a write (``maxmemory`` reached: OOM) or fails:

- single server: the commands are one MULTI/EXEC. Redis refuses the whole transaction
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
needed. The caller owns that subscription (:attr:`Opened.release`) and releases it however the
request ends (the end of the response, a client gone before the log was first read), not only
through the log iterator's ``finally`` (which does not run for an iterator closed before it
started); a failed publish releases it here.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.requests import HTTPConnection

from fakeai.errors import BadRequest, NotFound
from fakeai.latency_profiles import get_latency_manager
from fakeai.limits import refusal
from fakeai.services.edge.faults import HEADER as FAULT
from fakeai.services.edge.faults import MidStreamFault, StatusFault, choose_fault, status_error
from fakeai.services.edge.limits import ALLOW, Decision
from fakeai.services.edge.schemas import MAX_DEPTH, check_depth, too_deep
from fakeai.services.edge.state import EdgeState
from fakeai.services.edge.stream_log import follow_live
from fakeai.services.edge.tenants import OWNER_FIELD, tenant_of
from fakeai.services.edge.unavailable import redis_unavailable
from fakeai.streams import new_stream_id
from fakeai.streams.log import Entry, Group, Link
from fakeai.streams.log.batch import Batch, raise_first_error
from fakeai.streams.meta import F
from fakeai.wire import GenerationRequest, encode
from fakeai.wire.messages import Endpoint

__all__ = ["Opened", "Record", "decode_body", "disconnect_after", "open_stream"]

logger = logging.getLogger(__name__)

_REQUESTS_KEEP_MS = 2 * 3600 * 1000
META_SAFETY_S = 3600
"""The meta hash outlives retention by this much, in case no producer ever finishes it."""

Record = Callable[[Batch, str], None]
"""What an endpoint adds to a stream's record: called with the pipeline and the stream id."""


def _header_ms(request: HTTPConnection, name: str, maximum: float) -> float | None:
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


def _header_int(request: HTTPConnection, name: str, *, minimum: int) -> int | None:
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


def disconnect_after(request: HTTPConnection) -> int | None:
    """``X-FakeAI-Disconnect-After: N`` (N >= 1), shared with the stream routes."""
    return _header_int(request, "X-FakeAI-Disconnect-After", minimum=1)


def decode_body(raw: bytes) -> Any:
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


def check_model(model: str) -> None:
    """A 404 ``model_not_found`` for a model no latency profile knows."""
    try:
        get_latency_manager().get_profile(model, strict=True)
    except ValueError as e:
        raise NotFound(str(e), param="model", code="model_not_found") from None


def _record(
    pipe: Batch, state: EdgeState, gen: GenerationRequest, kind: str, owner: str | None
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
        pipe.expire(keys.meta(sid), state.settings.retention_s + META_SAFETY_S)
    pipe.zadd(keys.active(), {sid: gen.created_ms})


def _request(pipe: Batch, state: EdgeState, gen: GenerationRequest) -> None:
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
    state: EdgeState, gen: GenerationRequest, kind: str, owner: str | None, extra: Record | None
) -> None:
    """Write the stream's record and publish its request: all of it or nothing (module
    docstring). Raises what Redis raised (``OutOfMemoryError``: the app answers 503)."""
    link = state.hub.link
    record = Batch(link.slot)
    _record(record, state, gen, kind, owner)
    if extra is not None:
        extra(record, gen.stream_id)
    try:
        if not link.cluster:
            _request(record, state, gen)
            raise_first_error(await _execute(link, record.transaction()))
            return
        try:
            raise_first_error(await _execute(link, record.groups()))
            publish = Batch(link.slot)
            _request(publish, state, gen)
            raise_first_error(await _execute(link, publish.groups()))
        except BaseException:
            await _unrecord(state, gen.stream_id)
            raise
    except (RedisConnectionError, RedisTimeoutError, OSError) as e:
        raise redis_unavailable() from e


async def _execute(link: Link, groups: list[Group]) -> list[Any]:
    """``link.execute(groups)``, once more on a broken connection: a pooled connection that
    died with a Redis restart fails the first use, and the second takes a fresh one (as
    redis-py's own retry does). Running the commands twice is harmless: the record is
    idempotent, and a request published twice is answered once (the producer acknowledges a
    stream it runs or has finished)."""
    try:
        return await link.execute(groups)
    except (RedisConnectionError, RedisTimeoutError, OSError):
        return await link.execute(groups)


async def _unrecord(state: EdgeState, sid: str) -> None:
    """Remove a stream's record whose request was not published (best effort: DEL and ZREM
    free memory, so Redis accepts them even when it is out of memory)."""
    pipe = state.redis.pipeline(transaction=False)
    pipe.delete(state.keys.meta(sid), state.keys.conversation(sid))
    pipe.zrem(state.keys.active(), sid)
    try:
        await pipe.execute(raise_on_error=False)
    except (RedisError, RedisClusterException, OSError) as e:
        logger.warning("stream %s: could not remove its record after a failed publish: %s", sid, e)


@dataclass(slots=True)
class Opened:
    """A published stream, as its route needs it: the log iterator (from the start) and what
    the route must release when its response ends."""

    sid: str
    created_ms: int
    arrived: float
    """The request's arrival (Unix s): the origin of TTFT."""
    entries: AsyncGenerator[list[Entry], None]
    release: Callable[[], None]
    """Frees the hub subscription; the route runs it when its response ends."""
    admission: Decision
    fault: MidStreamFault | None
    cut: int | None
    """``X-FakeAI-Disconnect-After``."""


async def open_stream(
    request: HTTPConnection,
    state: EdgeState,
    *,
    kind: str,
    endpoint: Endpoint,
    model: str,
    body: dict[str, Any] | Callable[[str], dict[str, Any]],
    stream: bool,
    seed: int | None,
    extra: Record | None = None,
) -> Opened:
    """Admit, record and publish one generation request (module docstring).

    Args:
        kind: the stream's kind (meta ``kind``, the id's prefix): chat, completion, responses.
        endpoint: the generator the producer runs.
        body: the request body for the producer, or a function of the new stream id giving it.
        stream: the client reads the stream as it is produced (heartbeats on the reader).
        seed: the request's seed; ``X-FakeAI-Seed`` wins.
        extra: more commands for the stream's record (:data:`Record`).
    """
    settings = state.settings
    check_model(model)
    ttft_ms = _header_ms(request, "X-FakeAI-TTFT-Ms", settings.max_timing_ms)
    itl_ms = _header_ms(request, "X-FakeAI-ITL-Ms", settings.max_timing_ms)
    header_seed = _header_int(request, "X-FakeAI-Seed", minimum=-(2**63))
    cut = disconnect_after(request)
    tenant = tenant_of(request.scope)
    limiter = state.limiter
    fault = choose_fault(
        request.headers.get(FAULT),
        state.dice,
        streaming=stream,
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
        endpoint=endpoint,
        model=model,
        created_ms=created_ms,
        accepted_at=arrived,
        body=body(sid) if callable(body) else body,
        stream=stream,
        ttft_ms=ttft_ms,
        itl_ms=itl_ms,
        seed=header_seed if header_seed is not None else seed,
        retention_s=settings.retention_s,
    )
    # The producer holds every request to the same caps (fakeai.limits); checked here too, so
    # a request it would refuse gets a 400 before any byte, not an error event after a 200.
    if (why := refusal(gen, settings)) is not None:
        raise BadRequest(why.message, param=why.param, code="invalid_value")
    admission = await limiter.admit(state.redis, tenant.name, sid) if limiter else ALLOW
    admission.raise_if_refused()
    entries, release = follow_live(
        state,
        state.keys.chunks(sid),
        created_ms,
        f"{created_ms}-0",
        0,
        heartbeat_s=settings.heartbeat_s if stream else None,
    )
    try:
        await _publish(state, gen, kind, tenant.owner, extra)
    except BaseException:
        release()
        if limiter:
            await limiter.release(state.redis, tenant.name, sid)
        raise
    return Opened(
        sid=sid,
        created_ms=created_ms,
        arrived=arrived,
        entries=entries,
        release=release,
        admission=admission,
        fault=fault,
        cut=cut,
    )
