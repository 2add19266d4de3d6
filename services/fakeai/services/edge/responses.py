"""Streaming HTTP responses: one log iterator, one format, the races in between.

SSE goes through sse-starlette's ``EventSourceResponse``, which already runs the race between
sending, the heartbeat, client disconnect and server shutdown (sysid/sse-starlette
``sse_starlette/sse.py``). We hand it bytes, which it passes through untouched
(``ensure_bytes``). Divergences from its defaults, on purpose:

- ``Cache-Control: no-cache`` (its default is ``no-store``); it adds ``Connection: keep-alive``
  and ``X-Accel-Buffering: no`` itself.
- Line separator ``\\n`` and a plain ``: ping`` comment as the heartbeat (its default carries a
  timestamp and ``\\r\\n``), so every frame of a stream uses one separator.
- ``serve()`` turns off its automatic drain on SIGTERM (which cancels every stream at once, a
  silent close): the edge's own shutdown ends each live stream with a resumable error event.
- While heartbeats run, data writes go out without their own ``send_timeout`` scope
  (:class:`_EventStream`): an anyio ``move_on_after`` per write (scope, timer, backend lookup)
  was the largest single cost of a delivered event in profiles. A peer that stops reading
  still ends the response: the next heartbeat's write keeps its ``send_timeout`` and fails on
  the same stalled socket, so a stall is detected within ``heartbeat + send_timeout`` instead
  of ``send_timeout`` (``send_timeout`` >= 4 heartbeats, so at most 25% later).

Per delivered event the work is one bytes object per write: SSE events are pre-built once per
log entry (:attr:`Entry.sse`, shared by every client of the stream), a batch of one entry is
written as that object itself, and ``pipeline_lag`` is sampled once per write (below).

JSON Lines and text use Starlette's ``StreamingResponse`` and carry no heartbeat (a blank line
or comment would corrupt those formats for naive readers).

After the 200 has gone out, a failure is written as an error event (:meth:`Formatter.interrupted`)
and never as a bare close. A client disconnect is not a cancel: the stream goes on in Redis, and
the disconnect is counted (``client_disconnects``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator

from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Send

from fakeai.services.edge.formats import Formatter
from fakeai.services.edge.log import Entry, StreamInterrupted
from fakeai.services.edge.state import EdgeState
from fakeai.timeseries.names import CLIENT_DISCONNECTS, EDGE_TTFT, PIPELINE_LAG
from fakeai.wire import KIND_CHUNK, KIND_RESPONSE, ErrorBody

__all__ = ["stream_response"]

logger = logging.getLogger(__name__)

_DATA_KINDS = (KIND_CHUNK, KIND_RESPONSE)


class _EventStream(EventSourceResponse):
    """``EventSourceResponse`` whose data writes skip the per-write timeout scope while
    heartbeats run (the heartbeat's timed write bounds a stalled peer; module docstring)."""

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        # Heartbeats hold the send lock while they write; data writes never take it.
        if self.ping_interval > 0 and not self._send_lock.locked():
            await send(message)
            return
        await super()._send_with_timeout(send, message)


def _ping() -> ServerSentEvent:
    return ServerSentEvent(comment="ping", sep="\n")


def stream_response(
    state: EdgeState,
    entries: AsyncGenerator[list[Entry], None],
    fmt: Formatter,
    *,
    stream_id: str,
    model: str,
    prime: str | None = None,
    disconnect_after: int | None = None,
    arrived: float | None = None,
) -> Response:
    """A streaming response of ``entries`` (batches, as the readers yield them) in ``fmt``.

    Args:
        prime: SSE only: send a priming event with this position first.
        disconnect_after: end the response (no end marker) after this many events.
        arrived: request arrival (Unix s); when given, this is a live first delivery and the
            edge records ``edge_ttft`` and ``pipeline_lag``, sampled once per write (the
            write's oldest data entry) rather than per chunk: a write of k ready chunks costs
            one sample, and its lag is the largest of the k.
    """
    recorder = state.recorder
    entry = fmt.entry

    async def body() -> AsyncIterator[bytes]:
        state.response_started()
        first = True
        sent = 0
        timed_first = False
        ended = False  # the server ended the response on purpose (end of log, cut, error)
        try:
            if prime is not None and fmt.format == "sse":
                yield fmt.prime(prime)
                first = False
            try:
                async for batch in entries:
                    if disconnect_after is not None:
                        batch = batch[: disconnect_after - sent]
                    # Entries that are ready together go out in one write; a lone entry's
                    # bytes are written as they are (no join, no copy).
                    if len(batch) == 1:
                        out = entry(batch[0], first=first)
                    else:
                        out = b"".join(
                            [entry(e, first=first and i == 0) for i, e in enumerate(batch)]
                        )
                    first = False
                    if out:
                        yield out
                    if arrived is not None:
                        # One pipeline_lag sample per write, not per chunk: the oldest data
                        # entry of the write (the largest lag in it, so tails are not hidden).
                        for e in batch:
                            if e.kind in _DATA_KINDS:
                                now = time.time()
                                if not timed_first:
                                    timed_first = True
                                    recorder.add(EDGE_TTFT, model, now - arrived)
                                if e.t_us:
                                    recorder.add(PIPELINE_LAG, model, max(0.0, now - e.t_us / 1e6))
                                break
                    sent += len(batch)
                    if batch[-1].terminal or (
                        disconnect_after is not None and sent >= disconnect_after
                    ):
                        ended = True
                        return
                ended = True
            except StreamInterrupted as e:
                ended = True
                logger.debug("stream %s interrupted: %s", stream_id, e.code)
                yield fmt.interrupted(e.body())
            except RedisError as e:
                ended = True
                logger.warning("stream %s: Redis failed mid-stream: %s", stream_id, e)
                yield fmt.interrupted(
                    ErrorBody(
                        message="Redis is unavailable; reconnect with Last-Event-ID to resume",
                        type="server_error",
                        code="redis_unavailable",
                    )
                )
        finally:
            await entries.aclose()  # releases the hub subscription
            if not ended:
                recorder.incr(CLIENT_DISCONNECTS, model)
            state.response_ended()

    headers = {
        "X-Stream-Id": stream_id,
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    }
    if fmt.format == "sse":
        return _EventStream(
            body(),
            headers=headers,
            media_type=fmt.media_type,
            ping=state.settings.heartbeat_s,
            sep="\n",
            ping_message_factory=_ping,
            # A peer that stopped reading (no FIN, full window) must not hold the stream forever.
            send_timeout=max(30.0, 4 * state.settings.heartbeat_s),
        )
    return StreamingResponse(body(), headers=headers, media_type=fmt.media_type)
