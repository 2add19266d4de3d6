"""One stream, from its generation request to its terminal entry (one asyncio task each).

Sequence:

1. Read the stream's state: meta ``cancel_requested`` and the log's last entry (the service
   reads those of a whole batch of requests in one round trip, :func:`read_states`). A log
   that already ends with a terminal entry (a request delivered again after a failover that
   happened just after it finished) is only acknowledged.
2. A cancel requested before the start ends the stream at once (``e`` entry ``cancelled``).
3. Meta ``running`` + producer; the full response is built with :mod:`fakeai.content` from the
   request seed (else derived from the stream id), then streamed by ``StreamManager`` with the
   chat or completion generator, the TTFT origin being the request's ``accepted_at``.
4. Each chunk's dict is encoded once (msgspec) and queued on the writer as entry
   ``<created_ms>-<seq>``. When a previous producer died mid-stream, the same content is
   regenerated on the same schedule (deadlines in the past fire at once) and the entries the
   log already holds (``seq <= last seq``) are skipped, so only the missing rest is appended;
   Redis would reject them anyway (deterministic ids).
5. The terminal entry (``d``, or ``e`` with ``cancelled`` / ``generation_error`` /
   ``shutdown``) is written with the meta totals, expiry and the request's XACK, and the task
   waits for that flush: never a stream left open, never an ack before its end is written.

``stream: false`` requests get one ``r`` entry (the whole response) when the last token would
have been due, then the terminal entry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from fakeai.config.settings import Settings
from fakeai.content import build_chat_completion, build_text_completion
from fakeai.services.backoff import RETRYABLE, Backoff
from fakeai.services.producer.records import EndCode, Outcome, StreamRecords
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
from fakeai.streams.log import Kind, Link, parse_entry
from fakeai.streams.meta import F
from fakeai.timing import LatencyModel
from fakeai.wire import GenerationRequest, encode

__all__ = ["Deps", "StreamRun", "StreamState", "plan_seed", "read_states"]

logger = logging.getLogger(__name__)

_ENDPOINTS = {"chat": "/v1/chat/completions", "completion": "/v1/completions"}


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
    stream_timeout_s: float = 3600.0
    """A stream still running after this long ends with ``e`` ``timeout``."""


@dataclass(frozen=True, slots=True)
class StreamState:
    """What the log and meta say about a stream before its producer starts it."""

    cancel_requested: bool
    last_seq: int
    finished: bool


async def read_states(redis: RedisClient, keys: Keys, stream_ids: list[str]) -> list[StreamState]:
    """The states of ``stream_ids`` in one round trip (meta ``cancel_requested`` and the log's
    last entry of each); retries while Redis is unavailable.

    On a cluster the pipeline is redis-py's ``ClusterPipeline``: not a transaction, its
    commands grouped per node (one round trip per node), each stream's two keys in one slot.
    """
    backoff = Backoff()
    while True:
        try:
            pipe = redis.pipeline(transaction=False)
            for sid in stream_ids:
                pipe.hget(keys.meta(sid), F.CANCEL_REQUESTED)
                pipe.xrevrange(keys.chunks(sid), "+", "-", count=1)
            replies = await pipe.execute()
            break
        except RETRYABLE as e:
            if backoff.failures == 0:
                logger.warning("Redis unavailable (%s); retrying a state read", e)
            await backoff.sleep()
    states = []
    for cancel, last in zip(replies[::2], replies[1::2], strict=True):
        entry = parse_entry(*last[0]) if last else None
        states.append(
            StreamState(
                cancel_requested=cancel not in (None, b"", b"0"),
                last_seq=entry.seq if entry else 0,
                finished=entry.terminal if entry else False,
            )
        )
    return states


class StreamRun:
    """The task body of one stream; :meth:`end` stops it early (cancel or shutdown)."""

    def __init__(
        self, deps: Deps, request: GenerationRequest, request_key: str, msg_id: bytes
    ) -> None:
        self.deps = deps
        self.request = request
        self.request_key = request_key
        """The requests partition the request was read from."""
        self.msg_id = msg_id
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
        self.end_code: str | None = None
        self._ended = asyncio.Event()
        self._streaming = False

    @property
    def stream_id(self) -> str:
        return self.request.stream_id

    def end(self, code: str = EndCode.CANCELLED) -> None:
        """Stop the stream; it ends with an ``e`` entry carrying ``code``."""
        if self.end_code is None:
            self.end_code = code
        self._ended.set()
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
        if state.cancel_requested and self.end_code is None:
            self.end_code = EndCode.CANCELLED
        if self.end_code is not None:
            return await self._finish(seq + 1, seq, self._ended_outcome(0, 0))
        await self.deps.writer.put(self.records.started(self.deps.producer))
        logger.info(
            "stream %s: start (%s, model %s, resume after seq %d)",
            self.stream_id,
            self.request.endpoint,
            self.request.model,
            state.last_seq,
        )
        try:
            full = self._build_response()
        except Exception as e:
            logger.warning("stream %s: cannot build the response: %s", self.stream_id, e)
            return await self._finish(seq + 1, seq, _failure(e))
        if self.request.stream:
            return await self._stream(full, state.last_seq)
        return await self._whole(full, state.last_seq)

    # -- steps -------------------------------------------------------------------------------

    async def _read_state(self) -> StreamState:
        return (await read_states(self.deps.redis, self.deps.keys, [self.stream_id]))[0]

    def _build_response(self) -> dict[str, Any]:
        req = self.request
        build = build_chat_completion if req.endpoint == "chat" else build_text_completion
        return build(
            req.body,
            completion_id=req.stream_id,
            created=req.created_ms // 1000,
            seed=req.seed,
            model=req.model,
        )

    def _timing(self) -> tuple[bool, float | None, float | None]:
        """(latency simulation on, ttft_ms, itl_ms) for this request."""
        req = self.request
        if req.ttft_ms is not None or req.itl_ms is not None:
            if not self.deps.settings.latency_simulation:
                return True, req.ttft_ms or 0.0, req.itl_ms or 0.0
            return True, req.ttft_ms, req.itl_ms
        return self.deps.settings.latency_simulation, None, None

    def _origin(self) -> float:
        """The request's arrival (``accepted_at``, Unix time) on the event loop's clock."""
        return asyncio.get_running_loop().time() - (time.time() - self.request.accepted_at)

    def _chunks(self, full: Mapping[str, Any]) -> AsyncIterator[StreamChunk]:
        req = self.request
        body = req.body
        simulate, ttft_ms, itl_ms = self._timing()
        stream_type = StreamType.CHAT if req.endpoint == "chat" else StreamType.COMPLETION
        usage = full.get("usage") or {}
        options = body.get("stream_options")
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        temperature = body.get("temperature")
        return self.deps.manager.create_stream(
            stream_type=stream_type,
            model=req.model,
            full_response=full,
            endpoint=_ENDPOINTS[req.endpoint],
            timeout_seconds=self.deps.stream_timeout_s,
            stream_id=req.stream_id,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            temperature=temperature if isinstance(temperature, (int, float)) else None,
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            enable_latency_simulation=simulate,
            ttft_ms=ttft_ms,
            itl_ms=itl_ms,
            seed=plan_seed(req),
            start_time=self._origin(),
            created=req.created_ms // 1000,
            include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        )

    async def _stream(self, full: Mapping[str, Any], skip: int) -> str:
        put_nowait = self.deps.writer.put_nowait
        put = self.deps.writer.put
        entry = self.records.entry
        seq = tokens = 0
        outcome: Outcome | None = None
        self._streaming = True
        try:
            if self.end_code is not None:  # ended while the response was being built
                raise StreamCancelledException(self.stream_id)
            async for chunk in self._chunks(full):
                seq += 1
                tokens += chunk.token_count
                if seq > skip:
                    item = entry(seq, Kind.CHUNK, encode(chunk.data), chunk.token_count)
                    if not put_nowait(item):  # the writer is full: wait for room
                        await put(item)
                if self.end_code is not None:
                    break
        except StreamCancelledException:
            pass  # end() was called: end_code says why
        except StreamTimeoutException as e:
            logger.warning("stream %s: %s", self.stream_id, e)
            outcome = Outcome(
                completion_tokens=tokens,
                prompt_tokens=_prompt_tokens(full),
                error_code=EndCode.TIMEOUT,
                error_message=str(e),
            )
        except Exception as e:
            logger.warning("stream %s: generation failed: %s", self.stream_id, e)
            outcome = _failure(e)
        finally:
            self._streaming = False
        seq = max(seq, skip)
        if outcome is None:
            outcome = (
                self._ended_outcome(tokens, _prompt_tokens(full))
                if self.end_code is not None
                else _done(full, tokens)
            )
        return await self._finish(seq + 1, seq, outcome)

    async def _whole(self, full: Mapping[str, Any], skip: int) -> str:
        simulate, ttft_ms, itl_ms = self._timing()
        usage = full.get("usage") or {}
        completion = int(usage.get("completion_tokens") or 0)
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
                return await self._finish(skip + 1, skip, _failure(e))
            deadline = self._origin() + plan.total_s
            try:
                await asyncio.wait_for(
                    self._ended.wait(), deadline - asyncio.get_running_loop().time()
                )
            except TimeoutError:
                pass
        if self.end_code is not None:
            return await self._finish(skip + 1, skip, self._ended_outcome(0, _prompt_tokens(full)))
        if skip < 1:
            await self.deps.writer.put(
                self.records.entry(1, Kind.RESPONSE, encode(full), completion)
            )
        return await self._finish(2, 1, _done(full, completion))

    def _ended_outcome(self, tokens: int, prompt: int) -> Outcome:
        code = self.end_code or EndCode.CANCELLED
        message = {
            EndCode.CANCELLED: "the stream was cancelled",
            EndCode.SHUTDOWN: "the producer shut down before the stream ended; retry the request",
        }.get(code, code)
        return Outcome(
            completion_tokens=tokens, prompt_tokens=prompt, error_code=code, error_message=message
        )

    async def _finish(self, seq: int, chunks: int, outcome: Outcome) -> str:
        await self.deps.writer.write(self.records.terminal(seq, chunks, outcome))
        logger.info(
            "stream %s: %s (%d chunks, %s)",
            self.stream_id,
            outcome.status,
            chunks,
            outcome.error_code or outcome.finish_reason,
        )
        return outcome.status


def _done(full: Mapping[str, Any], tokens: int) -> Outcome:
    usage = full.get("usage") or {}
    choices = full.get("choices") or [{}]
    return Outcome(
        finish_reason=choices[0].get("finish_reason"),
        completion_tokens=int(usage.get("completion_tokens") or tokens),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
    )


def _prompt_tokens(full: Mapping[str, Any]) -> int:
    return int((full.get("usage") or {}).get("prompt_tokens") or 0)


def _failure(e: Exception) -> Outcome:
    return Outcome(error_code=EndCode.GENERATION_ERROR, error_message=f"generation failed: {e}")
