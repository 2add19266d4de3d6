"""One stream, from its generation request to its terminal entry (one asyncio task each).

Sequence:

1. Read the stream's state: meta ``cancel_requested`` and the log's last entry (the service
   reads those of a whole batch of requests in one round trip, :func:`read_states`). A log
   that already ends with a terminal entry (a request delivered again after a failover that
   happened just after it finished) is only acknowledged.
2. A request handed out more than ``settings.max_deliveries`` times (Redis's delivery count:
   it killed or outlived that many producers) is parked: a record in ``Keys.deadletter()``,
   then an ``e`` entry ``request_failed`` with the meta totals and the XACK, so it is never
   handed out again (:meth:`StreamRun.run`).
3. A request beyond a cap of the settings (:mod:`.limits`) ends with an ``e`` entry
   ``invalid_request`` naming the cap, before any work; so does one whose body the response
   builders refuse (``error.param`` names the field).
4. A cancel requested before the start ends the stream at once (``e`` entry ``cancelled``).
5. Meta ``running`` + producer; the full response is built with :mod:`fakeai.content` from the
   request seed (else derived from the stream id): on the loop when it is small, in a worker
   thread when it may be large (:data:`BUILD_INLINE_PIECES`; at most :data:`BUILDS_AT_ONCE`
   at a time per producer), so the loop keeps serving the other streams meanwhile (the thread
   gives the GIL back every ``sys.getswitchinterval()``, 5 ms). It is then streamed by
   ``StreamManager`` with the chat or completion generator, the TTFT origin being the
   request's ``accepted_at``. The caps bound the response: at most ``max_choices *
   max_output_tokens`` pieces (~5 MB at the defaults).
6. Each chunk's dict is encoded once (msgspec) and queued on the writer as entry
   ``<created_ms>-<seq>``. Every :data:`YIELD_EVERY` chunks the task gives the loop a turn,
   and waits while more than a quarter of the writer's queue is taken: a stream paced at 0 ms
   (whose chunks are all due at once) never holds the loop, nor the writer, against the
   others. When a previous producer died mid-stream, the same content is regenerated on the
   same schedule (deadlines in the past fire at once) and the entries the log already holds
   (``seq <= last seq``) are skipped, so only the missing rest is appended; Redis would reject
   them anyway (deterministic ids).
7. The stream lasts at most ``settings.max_stream_s``, counted from the request's arrival
   (``accepted_at``, so a stream taken over after a failover does not start a new allowance);
   past it, an ``e`` entry ``timeout``. A ``stream: false`` request waits at most as long.
8. The terminal entry (``d``, or ``e`` with ``cancelled`` / ``generation_error`` /
   ``shutdown`` / ``timeout`` / ...) is written with the meta totals, expiry, ZREM from the
   active set and the request's XACK, and the task waits for that flush: never a stream left
   open, never an ack before its end is written.

Redis out of memory (issue 10, finding 5): a stream whose writes Redis refuses for longer than
the writer retries them ends with ``e`` ``redis_full``, written as soon as Redis takes it
(:mod:`.ending`).

The stream id's family (:func:`fakeai.streams.positions.family_of`) picks what step 5 runs:
a Responses API stream (``resp_…``) is produced by :mod:`.response_events`, speech,
transcription and image streams by :mod:`.media_events` (one entry per event, whatever the
``stream`` flag); a realtime response (``rtresp_…``) is streamed as chat is, with the realtime
generator and its events relabelled (:mod:`.realtime_events`); a chat request with
``modalities`` holding ``"audio"`` is streamed with the audio generator (``delta.audio``).

``stream: false`` requests get one ``r`` entry (the whole response) when the last token would
have been due, then the terminal entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fakeai.config.settings import Settings
from fakeai.content import (
    InvalidRequestValue,
    build_audio_chat_completion,
    build_chat_completion,
    build_text_completion,
)
from fakeai.content.audio import wants_audio
from fakeai.limits import output_bound, refusal
from fakeai.services.producer.ending import (
    Ending,
    done,
    failure,
    invalid,
    prompt_tokens,
    timeout,
)
from fakeai.services.producer.media_events import MEDIA_FAMILIES, stream_media
from fakeai.services.producer.realtime_events import Relabel, cancelled_done, modality
from fakeai.services.producer.records import EndCode, Outcome, StreamRecords
from fakeai.services.producer.response_events import stream_events
from fakeai.services.producer.state import StreamState, read_states
from fakeai.services.producer.writer import LogWriter
from fakeai.streaming import StreamManager
from fakeai.streaming.base import (
    StreamCancelledException,
    StreamChunk,
    StreamTimeoutException,
    StreamType,
)
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient
from fakeai.streams.log import Kind, Link
from fakeai.streams.positions import family_of
from fakeai.timing import LatencyModel
from fakeai.wire import GenerationRequest, encode

__all__ = [
    "BUILDS_AT_ONCE",
    "BUILD_INLINE_PIECES",
    "YIELD_EVERY",
    "Deps",
    "StreamRun",
    "StreamState",
    "plan_seed",
    "read_states",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_ENDPOINTS = {"chat": "/v1/chat/completions", "completion": "/v1/completions"}

BUILD_INLINE_PIECES = 4096
"""Responses that may hold more token pieces than this are built in a worker thread. Building
takes about 3 µs per piece (``build_chat_completion`` with ``ignore_eos``, timed with
``time.perf_counter`` on the development machine), so an inline build holds the loop for about
10 ms at most, while one at the default caps (16 x 32,768 pieces) takes over a second."""
BUILDS_AT_ONCE = 2
"""Worker-thread builds at a time per producer (more would only share the GIL)."""
YIELD_EVERY = 64
"""Chunks a stream makes between two turns it gives the loop."""


def plan_seed(request: GenerationRequest) -> int:
    """The seed of the stream's timing plan: the request's, else one derived from its id.

    The id's random tail makes it stable across producers, so a stream taken over after a
    failover keeps its original schedule.
    """
    if request.seed is not None:
        return request.seed
    tail = request.stream_id.rsplit("-", 1)[-1][-16:]
    try:
        return int(tail, 16)
    except ValueError:
        return sum(request.stream_id.encode())


@dataclass(slots=True)
class Deps:
    """What every stream of a producer shares."""

    settings: Settings
    keys: Keys
    redis: RedisClient
    link: Link
    writer: LogWriter
    manager: StreamManager
    latency: LatencyModel | None
    producer: str
    builds: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(BUILDS_AT_ONCE))
    """Worker-thread builds under way (:data:`BUILDS_AT_ONCE`)."""


class StreamRun:
    """The task body of one stream; :meth:`end` stops it early (cancel or shutdown)."""

    def __init__(
        self,
        deps: Deps,
        request: GenerationRequest,
        request_key: str,
        msg_id: bytes,
        deliveries: int = 1,
    ) -> None:
        self.deps = deps
        self.request = request
        self.request_key = request_key
        """The requests partition the request was read from."""
        self.msg_id = msg_id
        self.deliveries = deliveries
        """How many times Redis has handed the request out, this time included."""
        retention = request.retention_s
        self.records = StreamRecords(
            request=request,
            msg_id=msg_id,
            request_key=request_key,
            keys=deps.keys,
            link=deps.link,
            firehose_partitions=deps.settings.firehose_partitions,
            retention_s=deps.settings.retention_s if retention is None else retention,
        )
        self.ending = Ending(self.records, deps.writer, deps.redis, deps.keys)
        self.family = family_of(request.stream_id) or request.endpoint
        """The stream's family (its id's prefix): what its entries hold."""
        self.end_code: str | None = None
        self.ended = asyncio.Event()
        """Set by :meth:`end`."""
        self._streaming = False

    @property
    def stream_id(self) -> str:
        return self.request.stream_id

    def plan_seed(self) -> int:
        """The seed of the stream's timing plan (:func:`plan_seed`)."""
        return plan_seed(self.request)

    def end(self, code: str = EndCode.CANCELLED) -> None:
        """Stop the stream; it ends with an ``e`` entry carrying ``code``."""
        if self.end_code is None:
            self.end_code = code
        self.ended.set()
        if self._streaming:
            self.deps.manager.cancel_stream(self.stream_id)

    async def run(self, state: StreamState | None = None) -> str:
        """Produce the stream; returns its final status (done, error, cancelled).

        ``state`` is the stream's state if the caller already read it (:func:`read_states`).
        """
        if state is None:
            state = await self._read_state()
        if state.finished:
            await self.deps.writer.write(self.records.ack())
            logger.info("stream %s: already complete, acknowledged", self.stream_id)
            return "done"
        seq = state.last_seq
        settings = self.deps.settings
        if self.deliveries > settings.max_deliveries:
            return await self.ending.park(seq, self.deliveries, settings.max_deliveries)
        refused = refusal(self.request, settings)
        if refused is not None:
            logger.warning("stream %s: refused: %s", self.stream_id, refused.message)
            return await self.ending.finish(seq + 1, seq, invalid(refused.param, refused.message))
        if state.cancel_requested and self.end_code is None:
            self.end_code = EndCode.CANCELLED
        if self.end_code is not None:
            return await self.ending.finish(seq + 1, seq, self.ended_outcome(0, 0))
        if self.time_left() <= 0:
            return await self.ending.finish(seq + 1, seq, timeout(self.deps.settings))
        await self.deps.writer.put(self.records.started(self.deps.producer))
        logger.debug(
            "stream %s: start (%s, model %s, resume after seq %d, delivery %d)",
            self.stream_id,
            self.request.endpoint,
            self.request.model,
            state.last_seq,
            self.deliveries,
        )
        if self.family == "responses":
            return await stream_events(self, seq)
        if self.family in MEDIA_FAMILIES:
            return await stream_media(self, seq, self.family)
        try:
            full = await self._build_response()
        except InvalidRequestValue as e:
            logger.warning("stream %s: invalid request: %s", self.stream_id, e)
            return await self.ending.finish(seq + 1, seq, invalid(e.param, str(e)))
        except Exception as e:
            logger.warning("stream %s: cannot build the response: %s", self.stream_id, e)
            return await self.ending.finish(seq + 1, seq, failure(e))
        if self.request.stream:
            return await self._stream(full, state.last_seq)
        return await self._whole(full, state.last_seq)

    # -- steps -------------------------------------------------------------------------------

    async def _read_state(self) -> StreamState:
        return (await read_states(self.deps.redis, self.deps.keys, [self.stream_id]))[0]

    async def _build_response(self) -> dict[str, Any]:
        req = self.request
        build = build_chat_completion if req.endpoint == "chat" else build_text_completion
        if req.endpoint == "chat" and wants_audio(req.body):
            build = build_audio_chat_completion

        def make() -> dict[str, Any]:
            return build(
                req.body,
                completion_id=req.stream_id,
                created=req.created_ms // 1000,
                seed=req.seed,
                model=req.model,
            )

        return await self.build(make)

    async def build(self, make: Callable[[], T], *, heavy: bool = False) -> T:
        """``make()``, the response builder of this stream: on the loop when the response is
        small, else (or when the caller knows it is ``heavy``, e.g. drawing PNGs) in a worker
        thread (:data:`BUILD_INLINE_PIECES`, :data:`BUILDS_AT_ONCE`)."""
        req = self.request
        if not heavy and output_bound(req.body, req.endpoint) <= BUILD_INLINE_PIECES:
            return make()
        async with self.deps.builds:
            return await asyncio.to_thread(make)

    def time_left(self) -> float:
        """Seconds the stream may still run (``settings.max_stream_s`` from its arrival)."""
        return self.deps.settings.max_stream_s - (time.time() - self.request.accepted_at)

    def timing(self) -> tuple[bool, float | None, float | None]:
        """(latency simulation on, ttft_ms, itl_ms) for this request."""
        req = self.request
        if req.ttft_ms is not None or req.itl_ms is not None:
            if not self.deps.settings.latency_simulation:
                return True, req.ttft_ms or 0.0, req.itl_ms or 0.0
            return True, req.ttft_ms, req.itl_ms
        return self.deps.settings.latency_simulation, None, None

    def origin(self) -> float:
        """The request's arrival (``accepted_at``, Unix time) on the event loop's clock."""
        return asyncio.get_running_loop().time() - (time.time() - self.request.accepted_at)

    def _chunks(self, full: Mapping[str, Any]) -> AsyncGenerator[StreamChunk, None]:
        req = self.request
        body = req.body
        simulate, ttft_ms, itl_ms = self.timing()
        stream_type = StreamType.CHAT if req.endpoint == "chat" else StreamType.COMPLETION
        extras: dict[str, Any] = {}
        if self.family == "realtime":
            stream_type = StreamType.REALTIME
            extras["metadata"] = {"modality": modality(body)}
        elif stream_type is StreamType.CHAT and wants_audio(body):
            stream_type = StreamType.AUDIO
        usage = full.get("usage") or {}
        options = body.get("stream_options")
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        temperature = body.get("temperature")
        return self.deps.manager.create_stream(
            stream_type=stream_type,
            model=req.model,
            full_response=full,
            endpoint=_ENDPOINTS[req.endpoint],
            timeout_seconds=max(self.time_left(), 0.001),
            stream_id=req.stream_id,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            temperature=temperature if isinstance(temperature, (int, float)) else None,
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            enable_latency_simulation=simulate,
            ttft_ms=ttft_ms,
            itl_ms=itl_ms,
            seed=plan_seed(req),
            start_time=self.origin(),
            created=req.created_ms // 1000,
            include_usage=isinstance(options, dict) and options.get("include_usage") is True,
            **extras,
        )

    async def _stream(self, full: Mapping[str, Any], skip: int) -> str:
        writer = self.deps.writer
        put_nowait = writer.put_nowait
        put = writer.put
        entry = self.records.entry
        head = self.records.head
        refused = writer.refused
        throttle = max(1, writer.max_pending // 4)
        seq = tokens = 0
        outcome: Outcome | None = None
        relabel = Relabel(self.request) if self.family == "realtime" else None
        self._streaming = True
        chunks = self._chunks(full)
        try:
            if self.end_code is not None:  # ended while the response was being built
                raise StreamCancelledException(self.stream_id)
            async for chunk in chunks:
                seq += 1
                tokens += chunk.token_count
                if seq > skip:
                    data = chunk.data if relabel is None else relabel(chunk.data, seq)
                    item = entry(seq, Kind.CHUNK, encode(data), chunk.token_count)
                    if not put_nowait(item):  # the writer is full: wait for room
                        await put(item)
                if self.end_code is not None or (refused and head in refused):
                    break
                if not seq % YIELD_EVERY:  # a turn for the loop, a share of the writer
                    if writer.pending >= throttle:
                        await writer.below(throttle)
                    else:
                        await asyncio.sleep(0)
        except StreamCancelledException:
            pass  # end() was called: end_code says why
        except StreamTimeoutException as e:
            logger.warning("stream %s: %s", self.stream_id, e)
            outcome = timeout(self.deps.settings, tokens, prompt_tokens(full))
        except Exception as e:
            logger.warning("stream %s: generation failed: %s", self.stream_id, e)
            outcome = failure(e)
        finally:
            self._streaming = False
            await chunks.aclose()
        seq = max(seq, skip)
        if outcome is None and self.end_code is not None and relabel is not None:
            seq += 1  # a realtime response ends with its response.done, cancelled or not
            ended = cancelled_done(relabel, seq, tokens, modality(self.request.body))
            await put(entry(seq, Kind.CHUNK, encode(ended), 0))
        if outcome is None:
            outcome = (
                self.ended_outcome(tokens, prompt_tokens(full))
                if self.end_code is not None
                else done(full, tokens)
            )
        return await self.ending.finish(seq + 1, seq, outcome)

    async def _whole(self, full: Mapping[str, Any], skip: int) -> str:
        simulate, ttft_ms, itl_ms = self.timing()
        usage = full.get("usage") or {}
        completion = int(usage.get("completion_tokens") or 0)
        timed_out = False
        if simulate and self.deps.latency is not None:
            try:
                plan = self.deps.latency.plan(
                    self.request.model,
                    output_tokens=max(1, completion),
                    prompt_tokens=int(usage.get("prompt_tokens") or 0),
                    seed=plan_seed(self.request),
                    ttft_ms=ttft_ms,
                    itl_ms=itl_ms,
                )
            except Exception as e:
                logger.warning("stream %s: no timing plan: %s", self.stream_id, e)
                return await self.ending.finish(skip + 1, skip, failure(e))
            wait_s = plan.total_s - (time.time() - self.request.accepted_at)
            time_left = self.time_left()
            timed_out = wait_s > time_left
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ended.wait(), max(0.0, min(wait_s, time_left)))
        if self.end_code is not None:
            return await self.ending.finish(
                skip + 1, skip, self.ended_outcome(0, prompt_tokens(full))
            )
        if timed_out:
            return await self.ending.finish(
                skip + 1, skip, timeout(self.deps.settings, 0, prompt_tokens(full))
            )
        if skip < 1:
            await self.deps.writer.put(
                self.records.entry(1, Kind.RESPONSE, encode(full), completion)
            )
        return await self.ending.finish(2, 1, done(full, completion))

    def ended_outcome(self, tokens: int, prompt: int) -> Outcome:
        code = self.end_code or EndCode.CANCELLED
        message = {
            EndCode.CANCELLED: "the stream was cancelled",
            EndCode.SHUTDOWN: "the producer shut down before the stream ended; retry the request",
        }.get(code, code)
        return Outcome(
            completion_tokens=tokens, prompt_tokens=prompt, error_code=code, error_message=message
        )
