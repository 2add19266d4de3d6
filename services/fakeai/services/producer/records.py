"""What one stream writes to Redis: its log entries, firehose events and meta updates, as ops.

Pure construction, no I/O: every method returns an :data:`~fakeai.services.producer.writer.Op`
that queues commands on the writer's pipeline. The formats are the contracts of
:mod:`fakeai.wire.messages` (log entry fields ``k``/``d``/``t``, ids ``<created_ms>-<seq>``)
and :mod:`fakeai.streams.meta` (field names).

Each log entry is written together with its firehose event (``XADD ... MINID ~ <now -
retention>``, https://redis.io/docs/latest/commands/xadd/, trims the partition by age in the
same command). The terminal entry comes with everything that ends a stream, in the same round
trip: meta status and totals, EXPIRE (or PERSIST for "keep forever") of log and meta, ZREM
from the active set, and the XACK of the request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from fakeai.services.producer.writer import Op, Pipeline
from fakeai.streams import PRODUCERS_GROUP, Keys, entry_id
from fakeai.streams.meta import F
from fakeai.wire import (
    KIND_DONE,
    KIND_ERROR,
    DonePayload,
    ErrorBody,
    ErrorPayload,
    FirehoseEvent,
    GenerationRequest,
    encode,
)

__all__ = ["EndCode", "Outcome", "StreamRecords", "ack_op", "now_us"]


class EndCode:
    """Codes of terminal ``e`` entries this producer writes (``error.code``)."""

    CANCELLED = "cancelled"
    GENERATION_ERROR = "generation_error"
    SHUTDOWN = "shutdown"
    """The producer stopped before the stream ended; retrying the request can succeed."""
    TIMEOUT = "timeout"
    """The stream ran past the producer's stream timeout."""


_ERROR_TYPES = {
    EndCode.CANCELLED: "invalid_request_error",
    EndCode.GENERATION_ERROR: "server_error",
    EndCode.SHUTDOWN: "server_error",
    EndCode.TIMEOUT: "server_error",
}
_STATUS_OF_CODE = {EndCode.CANCELLED: "cancelled"}


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a stream ended: ``error_code`` None means done."""

    finish_reason: str | None = None
    completion_tokens: int = 0
    prompt_tokens: int = 0
    error_code: str | None = None
    error_message: str = ""

    @property
    def status(self) -> str:
        if self.error_code is None:
            return "done"
        return _STATUS_OF_CODE.get(self.error_code, "error")


@dataclass(slots=True)
class StreamRecords:
    """Op builder for one stream (bound to its keys, ids and retention)."""

    request: GenerationRequest
    msg_id: bytes | str
    """The request's entry id in ``Keys.requests()`` (acknowledged with the terminal entry)."""
    keys: Keys
    firehose_partitions: int
    firehose_retention_s: int
    retention_s: int
    _chunks_key: str = field(init=False)
    _meta_key: str = field(init=False)
    _events_key: str = field(init=False)
    _accepted_us: int = field(init=False)

    def __post_init__(self) -> None:
        sid = self.request.stream_id
        self._chunks_key = self.keys.chunks(sid)
        self._meta_key = self.keys.meta(sid)
        self._events_key = self.keys.events_for(sid, self.firehose_partitions)
        self._accepted_us = int(self.request.accepted_at * 1_000_000)

    def entry_id(self, seq: int) -> str:
        return entry_id(self.request.created_ms, seq)

    def _event(self, pipe: Pipeline, event: FirehoseEvent, t_us: int) -> None:
        minid = t_us // 1000 - self.firehose_retention_s * 1000
        pipe.xadd(self._events_key, {"f": encode(event)}, minid=minid, approximate=True)

    def started(self, producer: str) -> Op:
        """Meta: running on ``producer``."""
        mapping = {F.STATUS: "running", F.PRODUCER: producer, F.STARTED_AT: repr(time.time())}

        def op(pipe: Pipeline) -> None:
            pipe.hset(self._meta_key, mapping=mapping)

        return op

    def entry(self, seq: int, kind: bytes, data: bytes, tokens: int) -> Op:
        """A data entry (``c`` chunk or ``r`` whole response) and its firehose event.

        ``data`` is the payload's JSON, encoded once; the firehose carries the same bytes.
        """
        t_us = now_us()
        eid = self.entry_id(seq)
        fields = {"k": kind, "d": data, "t": t_us}
        event = FirehoseEvent(
            stream_id=self.request.stream_id,
            entry_id=eid,
            kind=kind.decode(),
            model=self.request.model,
            accepted_at_us=self._accepted_us,
            emitted_at_us=t_us,
            tokens=tokens,
            data=msgspec.Raw(data),
        )
        first = seq == 1

        def op(pipe: Pipeline) -> None:
            pipe.xadd(self._chunks_key, fields, id=eid)
            self._event(pipe, event, t_us)
            if first:
                pipe.hset(self._meta_key, F.FIRST_CHUNK_AT, t_us / 1e6)

        return op

    def terminal(self, seq: int, chunks: int, outcome: Outcome) -> Op:
        """The terminal entry (``d`` or ``e``) and everything that ends the stream."""
        t_us = now_us()
        eid = self.entry_id(seq)
        meta: dict[str, Any] = {
            F.STATUS: outcome.status,
            F.FINISHED_AT: t_us / 1e6,
            F.CHUNKS: chunks,
            F.FINISH_REASON: outcome.finish_reason or "",
            F.COMPLETION_TOKENS: outcome.completion_tokens,
            F.PROMPT_TOKENS: outcome.prompt_tokens,
        }
        if outcome.error_code is None:
            kind = KIND_DONE
            payload = encode(
                DonePayload(
                    finish_reason=outcome.finish_reason,
                    chunks=chunks,
                    completion_tokens=outcome.completion_tokens,
                    prompt_tokens=outcome.prompt_tokens,
                )
            )
        else:
            kind = KIND_ERROR
            payload = encode(
                ErrorPayload(
                    error=ErrorBody(
                        message=outcome.error_message or outcome.error_code,
                        type=_ERROR_TYPES.get(outcome.error_code, "server_error"),
                        code=outcome.error_code,
                    )
                )
            )
            meta[F.ERROR_CODE] = outcome.error_code
            meta[F.ERROR_MESSAGE] = outcome.error_message
        fields = {"k": kind, "d": payload, "t": t_us}
        event = FirehoseEvent(
            stream_id=self.request.stream_id,
            entry_id=eid,
            kind=kind.decode(),
            model=self.request.model,
            accepted_at_us=self._accepted_us,
            emitted_at_us=t_us,
            tokens=outcome.completion_tokens,
            error_code=outcome.error_code,
        )
        ack = self.ack()

        def op(pipe: Pipeline) -> None:
            pipe.xadd(self._chunks_key, fields, id=eid)
            pipe.hset(self._meta_key, mapping=meta)
            self._expire(pipe)
            pipe.zrem(self.keys.active(), self.request.stream_id)
            self._event(pipe, event, t_us)
            ack(pipe)

        return op

    def _expire(self, pipe: Pipeline) -> None:
        for key in (self._chunks_key, self._meta_key):
            if self.retention_s > 0:
                pipe.expire(key, self.retention_s)
            else:
                pipe.persist(key)

    def ack(self) -> Op:
        """XACK of the request (alone: for a stream whose log was already complete)."""
        return ack_op(self.keys, self.msg_id)


def ack_op(keys: Keys, msg_id: bytes | str) -> Op:
    """XACK of one request in group ``producers``."""
    requests = keys.requests()

    def op(pipe: Pipeline) -> None:
        pipe.xack(requests, PRODUCERS_GROUP, msg_id)

    return op
