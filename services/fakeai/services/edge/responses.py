"""Streaming HTTP responses: one log iterator, one format, the races in between.

A streaming response is a race between sending, the heartbeat, client disconnect, a peer that
stopped reading, and server shutdown. sse-starlette's ``EventSourceResponse`` runs it with an
anyio task group per response (the body, a ping task, a disconnect listener, a shutdown
watcher; sysid/sse-starlette ``sse_starlette/sse.py``). Profiled under load (50 clients of
5-token streams), that setup and teardown (``TaskGroup.start_soon``, ``CancelScope``,
``cancel_on_finish``) was ~18% of the edge's CPU, the largest per-request cost, so the edge
writes its own :class:`EventStream` that runs the body in the request's own task:

- Heartbeat: the log iterators take ``heartbeat_s`` and yield an empty batch when that long
  passes without an entry (:meth:`.hub.Subscription.get` settles its waiter from a timer);
  the body writes ``: ping`` then. Divergence from sse-starlette: a ping goes out after
  ``heartbeat_s`` of *silence*, not on a fixed clock regardless of data (a stream that is
  sending needs no keep-alive comment).
- Client disconnect: one small task per response waits on ``receive()`` for
  ``http.disconnect`` (uvicorn drops writes to a closed connection silently, so a failed
  ``send`` alone would miss it) and cancels the response's task; a ``send`` that raises
  ``OSError`` (servers that report it that way) ends it too. Either way the body's iterator
  is closed and the response's ``on_close`` runs: the hub subscription is released and the
  disconnect counted.
- Release, whenever the response ends: closing an async generator that never started skips
  its ``finally`` (a client gone before the body first ran; a stall injected before the log
  is first read; a response the app failed to run), so what a response holds is released
  by ``on_close``, which :meth:`EventStream.close` runs exactly once in every case, not by the
  body's ``finally`` alone (issue 10, finding 8; ``tests/integration/edge/test_edge_leaks.py``).
- A peer that stops reading (no FIN, full window): uvicorn's ``send`` then waits for the
  socket to drain. One timer per event loop (:class:`_StallWatch`) sweeps the open responses
  every quarter ``send_timeout`` and ends, like a disconnect, each whose write has been
  pending ``send_timeout`` or longer; a write costs two attribute stores instead of a timeout
  scope, and an open response a set entry instead of a timer.
- Shutdown: unchanged and not the response's business: ``EdgeState.begin_shutdown`` fails
  every hub subscription (and paced replays watch ``closing``), so each stream ends with a
  resumable ``edge_shutdown`` error event. sse-starlette's own SIGTERM drain (a silent
  cancel) no longer exists to be turned off.
- Headers as before: ``Cache-Control: no-cache``, ``Connection: keep-alive``,
  ``X-Accel-Buffering: no``, ``X-Stream-Id``; lines end in ``\\n``; the heartbeat is a plain
  ``: ping`` comment.

Per delivered event the work is one bytes object per write: SSE events are pre-built once per
log entry (:attr:`Entry.sse`, shared by every client of the stream), a batch of one entry is
written as that object itself, and ``pipeline_lag`` is sampled once per write (below).

Memory per open connection (an idle SSE stream may stay open for minutes; S5 holds 10,000):
the response does not run inside the routing stack. :class:`RunStreamsOutside`, wrapped around
the app's whole middleware stack (the error middleware too), gives the scope a slot;
:meth:`EventStream.__call__` parks itself there and returns, so the route's frames (router,
exception wrappers, the endpoint with its ``Request`` and request body) are released before
the first byte is sent, and the middleware then runs the response with the server's own
``receive`` and ``send``. Without the middleware (any other stack) the response runs in place,
as before.

Compression: a client whose ``Accept-Encoding`` allows gzip gets SSE, JSON Lines and text
gzipped, each write flushed at once (:mod:`.compression`); the others get them as before, and
so does everyone with ``FAKEAI_COMPRESS_STREAMS=false``.

JSON Lines and text use the same response without a heartbeat (a blank line or comment would
corrupt those formats for naive readers).

After the 200 has gone out, a failure is written as an error event (:meth:`Formatter.interrupted`)
and never as a bare close. A client disconnect is not a cancel: the stream goes on in Redis, and
the disconnect is counted (``client_disconnects``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import ClassVar

from redis.exceptions import RedisClusterException, RedisError
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from fakeai.services.edge.compression import stream_encoder
from fakeai.services.edge.formats import Formatter, event_type
from fakeai.services.edge.interrupted import StreamInterrupted
from fakeai.services.edge.state import EdgeState
from fakeai.streaming.sse import sse_comment
from fakeai.streams.log import Entry, Kind
from fakeai.streams.positions import is_event_stream
from fakeai.timeseries.names import CLIENT_DISCONNECTS, EDGE_TTFT, PIPELINE_LAG
from fakeai.timeseries.recorder import SampleRecorder
from fakeai.wire import ErrorBody

__all__ = ["DEFERRED", "EventStream", "RunStreamsOutside", "stream_response"]

logger = logging.getLogger(__name__)

_DATA_KINDS = (Kind.CHUNK, Kind.RESPONSE)
_PING = sse_comment(b"ping")

DEFERRED = "fakeai.deferred_responses"
"""Scope key of the slot :class:`RunStreamsOutside` offers (a list the response joins)."""


class RunStreamsOutside:
    """Pure ASGI: runs streaming responses after the app below it has returned (module
    docstring). Place it outside every middleware that need not see the body's bytes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        slot: list[EventStream] = []
        scope[DEFERRED] = slot
        try:
            await self.app(scope, receive, send)
        except BaseException:
            if slot:  # returned by the route but never to be sent: release what it holds
                await slot[0].close()
            raise
        del scope[DEFERRED]
        if slot:
            await slot[0].run(scope, receive, send)


class EventStream(StreamingResponse):
    """A streaming response whose body runs in the request's own task (module docstring).

    ``content`` yields the bytes to write; it is closed, then ``on_close`` runs, once, when
    the response ends for any reason (:meth:`close`), even if ``content`` never started. The
    response ends early, without error, when the client disconnects or a write stays pending
    for ``send_timeout`` seconds.
    """

    def __init__(
        self,
        content: AsyncGenerator[bytes, None],
        *,
        headers: Mapping[str, str],
        media_type: str,
        send_timeout: float,
        on_close: Callable[[], None] | None = None,
        compress: bool = True,
    ) -> None:
        super().__init__(content, headers=headers, media_type=media_type)
        self._compress = compress
        self._content = content
        self._on_close = on_close
        self._send_timeout = send_timeout
        self._aborted = False
        self._sending_since: float | None = None
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        slot = scope.get(DEFERRED)
        if slot is not None and not slot:
            slot.append(self)  # RunStreamsOutside runs it once the routing stack is gone
            return
        await self.run(scope, receive, send)

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the response: the race of the module docstring, in the calling task."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        watcher = loop.create_task(self._watch_disconnect(receive, task))
        self._task = task
        stalls = _StallWatch.of(loop)
        stalls.add(self)
        gzip, extra = stream_encoder(
            self.media_type if self._compress else None, scope.get("headers", ())
        )
        try:
            self._sending_since = loop.time()
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers + extra if extra else self.raw_headers,
                }
            )
            self._sending_since = None
            self.raw_headers = []  # sent: ~0.6 KiB less for the life of the connection
            async for chunk in self._content:
                self._sending_since = loop.time()
                if gzip is not None:
                    chunk = gzip.write(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                self._sending_since = None
            end = b"" if gzip is None else gzip.finish()
            await send({"type": "http.response.body", "body": end, "more_body": False})
        except asyncio.CancelledError:
            if not self._aborted:
                raise  # the server's cancel, not ours
            task.uncancel()
        except OSError:
            pass  # the client went away (a server that reports it from send)
        finally:
            watcher.cancel()
            stalls.discard(self)
            self._task = None
            await self.close()

    async def close(self) -> None:
        """Close ``content`` (its ``finally`` runs if it started), then run ``on_close``
        (whether it started or not); once, however often this is called."""
        on_close, self._on_close = self._on_close, None
        try:
            await self._content.aclose()
        finally:
            if on_close is not None:
                on_close()

    def _abort(self, task: asyncio.Task[None]) -> None:
        if not self._aborted:
            self._aborted = True
            task.cancel()

    async def _watch_disconnect(self, receive: Receive, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(Exception):
            while (await receive())["type"] != "http.disconnect":
                pass
            self._abort(task)

    def _stalled(self, now: float) -> bool:
        """End the response if its pending write is ``send_timeout`` old (:class:`_StallWatch`)."""
        since = self._sending_since
        if since is None or now - since < self._send_timeout or self._task is None:
            return False
        logger.debug("client stopped reading for %.0f s; ending the response", now - since)
        self._abort(self._task)
        return True


class _StallWatch:
    """One timer per event loop for every open :class:`EventStream`: each sweep ends the
    responses whose write has been pending ``send_timeout`` or longer. Runs only while
    responses are open; a response is ended between ``send_timeout`` and 1.25 times that."""

    _by_loop: ClassVar[dict[int, _StallWatch]] = {}

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._open: set[EventStream] = set()
        self._period = math.inf
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _StallWatch:
        watch = cls._by_loop.get(id(loop))
        if watch is None or watch._loop is not loop:
            watch = cls._by_loop[id(loop)] = cls(loop)
        return watch

    def add(self, response: EventStream) -> None:
        self._open.add(response)
        period = response._send_timeout / 4
        if period < self._period:
            self._period = period
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_later(period, self._sweep)

    def discard(self, response: EventStream) -> None:
        self._open.discard(response)
        if not self._open:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None
            self._period = math.inf
            if self._by_loop.get(id(self._loop)) is self:
                del self._by_loop[id(self._loop)]

    def _sweep(self) -> None:
        now = self._loop.time()
        for response in [r for r in self._open if r._sending_since is not None]:
            response._stalled(now)
        self._timer = self._loop.call_later(self._period, self._sweep) if self._open else None


def _is_data(e: Entry) -> bool:
    return e.kind in _DATA_KINDS


def _is_delta(e: Entry) -> bool:
    """An event stream's entry that carries output tokens: a ``*.delta`` event (text, function
    call arguments, reasoning summary, transcript)."""
    return e.kind == Kind.CHUNK and event_type(e.data).endswith(b".delta")


def _sample_lag(
    recorder: SampleRecorder,
    model: str,
    batch: list[Entry],
    arrived: float,
    timed_first: bool,
    carries_tokens: Callable[[Entry], bool],
) -> bool:
    """One pipeline_lag sample per write, not per chunk: the oldest entry of the write that
    carries tokens (the largest lag in it, so tails are not hidden); edge_ttft at the first
    one. Returns whether the first such entry has been timed."""
    for e in batch:
        if carries_tokens(e):
            now = time.time()
            if not timed_first:
                timed_first = True
                recorder.add(EDGE_TTFT, model, now - arrived, now)
            if e.t_us:
                recorder.add(PIPELINE_LAG, model, max(0.0, now - e.t_us / 1e6), now)
            break
    return timed_first


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
    release: Callable[[], None] | None = None,
) -> Response:
    """A streaming response of ``entries`` (batches, as the readers yield them) in ``fmt``.

    An empty batch is the heartbeat (the readers' ``heartbeat_s``): SSE writes ``: ping``.

    Args:
        prime: SSE only: send a priming event with this position first.
        disconnect_after: end the response (no end marker) after this many events.
        arrived: request arrival (Unix s); when given, this is a live first delivery and the
            edge records ``edge_ttft`` and ``pipeline_lag``, sampled once per write (the
            write's oldest entry that carries tokens) rather than per chunk: a write of k
            ready chunks costs one sample, and its lag is the largest of the k. A chat or
            completion chunk carries tokens; of an event stream (a Responses API response),
            only a ``*.delta`` event does: ``response.created`` and the events up to the first
            delta are due at acceptance, so timing them would make TTFT about 0.
        release: what frees the route's hold on the stream (its hub subscription): runs when
            the response is over, whether or not ``entries`` ever started (module docstring).
    """
    recorder = state.recorder
    entry = fmt.entry
    carries_tokens = _is_delta if is_event_stream(stream_id) else _is_data
    ended = False  # the server ended the response on purpose (end of log, cut, error)

    async def body() -> AsyncGenerator[bytes, None]:
        nonlocal ended
        state.response_started()
        first = True
        sent = 0
        timed_first = False
        try:
            if prime is not None and fmt.format == "sse":
                yield fmt.prime(prime)
                first = False
            try:
                async for batch in entries:
                    if not batch:  # heartbeat_s passed without an entry
                        if fmt.format == "sse":
                            yield _PING
                        continue
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
                        timed_first = _sample_lag(
                            recorder, model, batch, arrived, timed_first, carries_tokens
                        )
                    sent += len(batch)
                    if batch[-1].terminal or (
                        disconnect_after is not None and sent >= disconnect_after
                    ):
                        ended = True
                        return
                    # An idle stream waits here for its next batch: hold no entry meanwhile.
                    del batch, out
                ended = True
            except StreamInterrupted as e:
                ended = True
                logger.debug("stream %s interrupted: %s", stream_id, e.code)
                yield fmt.interrupted(e.body())
            except (RedisError, RedisClusterException) as e:  # the latter: no node has the slot
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
            await entries.aclose()  # the log iterator's own cleanup, if it started
            state.response_ended()

    def on_close() -> None:
        if release is not None:
            release()
        if not ended:  # the client left (before the first byte, too), or a write stalled
            recorder.incr(CLIENT_DISCONNECTS, model)

    headers = {
        "X-Stream-Id": stream_id,
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    }
    if fmt.format == "sse":
        headers["Connection"] = "keep-alive"
    return EventStream(
        body(),
        headers=headers,
        media_type=fmt.media_type,
        # A peer that stopped reading (no FIN, full window) must not hold the stream forever.
        send_timeout=max(30.0, 4 * state.settings.heartbeat_s),
        on_close=on_close,
        compress=state.settings.compress_streams,
    )
