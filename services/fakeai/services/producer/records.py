"""What one stream writes to Redis: its log entries, firehose events and meta updates, as items.

Pure construction, no I/O: every method returns a writer item
(:data:`~fakeai.services.producer.writer.Item`). The formats are the contracts of
:mod:`fakeai.wire.messages` (log entry fields ``k``/``d``/``t``, ids ``<created_ms>-<seq>``,
firehose batch entries ``b``) and :mod:`fakeai.streams.meta` (field names).

Each log entry is written together with its firehose event, which the writer batches per
partition (:mod:`.firehose`). Data entries, the per-chunk hot path, are
:data:`~fakeai.services.producer.writer.Logged`: their commands are built directly in the
Redis protocol (RESP, https://redis.io/docs/latest/develop/reference/protocol-spec/) from parts
encoded once per stream, and so is the firehose event's JSON (the stream's part of a batch,
``[stream_id, model, accepted_at_us, created_ms, [``, is encoded once per stream); both are
byte for byte what redis-py and msgspec would produce (tested). The terminal entry comes with
everything that ends a stream, in the same round trip: meta status and totals, EXPIRE (or
PERSIST for "keep forever") of log and meta, ZREM from the active set, its firehose event
(carrying the terminal payload), then the XACK of the request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from fakeai.services.producer.writer import Final, Logged, Op, Pipeline
from fakeai.streams import PRODUCERS_GROUP, Keys, entry_id
from fakeai.streams.meta import F
from fakeai.wire import (
    KIND_DONE,
    KIND_ERROR,
    DonePayload,
    ErrorBody,
    ErrorPayload,
    FirehoseItem,
    GenerationRequest,
    encode,
)
from fakeai.wire.resp import bulk, pack

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
    """Item builder for one stream (bound to its keys, ids and retention)."""

    request: GenerationRequest
    msg_id: bytes | str
    """The request's entry id in ``Keys.requests()`` (acknowledged with the terminal entry)."""
    keys: Keys
    firehose_partitions: int
    retention_s: int
    _chunks_key: str = field(init=False)
    _meta_key: str = field(init=False)
    _accepted_us: int = field(init=False)
    _id_head: bytes = field(init=False)
    _xadd_log: bytes = field(init=False)
    _events_bkey: bytes = field(init=False)
    _event_head: bytes = field(init=False)
    _meta_bkey: bytes = field(init=False)

    def __post_init__(self) -> None:
        req = self.request
        sid = req.stream_id
        self._chunks_key = self.keys.chunks(sid)
        self._meta_key = self.keys.meta(sid)
        self._accepted_us = int(req.accepted_at * 1_000_000)
        # The constant parts of every data entry's commands and firehose event, encoded once.
        self._id_head = b"%d-" % req.created_ms
        self._events_bkey = self.keys.events_for(sid, self.firehose_partitions).encode()
        self._meta_bkey = self._meta_key.encode()
        # XADD <chunks> <id> k <kind> d <data> t <t_us>: 9 arguments
        self._xadd_log = b"*9\r\n$4\r\nXADD\r\n" + bulk(self._chunks_key.encode())
        # FirehoseStream is array_like: [stream_id, model, accepted_at_us, created_ms, [events]]
        self._event_head = b"[%s,%s,%d,%d,[" % (
            encode(sid),
            encode(req.model),
            self._accepted_us,
            req.created_ms,
        )

    def entry_id(self, seq: int) -> str:
        return entry_id(self.request.created_ms, seq)

    def started(self, producer: str) -> Op:
        """Meta: running on ``producer``."""
        mapping = {F.STATUS: "running", F.PRODUCER: producer, F.STARTED_AT: repr(time.time())}

        def op(pipe: Pipeline) -> None:
            pipe.hset(self._meta_key, mapping=mapping)

        return op

    def entry(self, seq: int, kind: bytes, data: bytes, tokens: int) -> Logged:
        """A data entry (``c`` chunk or ``r`` whole response) and its firehose event.

        ``data`` is the payload's JSON, encoded once; the firehose carries the same bytes.
        ``kind`` is one of the one-letter ``KIND_*`` constants (no JSON escaping needed).
        """
        t_us = now_us()
        eid = b"%s%d" % (self._id_head, seq)
        t = b"%d" % t_us
        packed = (
            b"%s$%d\r\n%s\r\n$1\r\nk\r\n$1\r\n%s\r\n$1\r\nd\r\n$%d\r\n%s\r\n$1\r\nt\r\n$%d\r\n%s\r\n"
            % (
                self._xadd_log,
                len(eid),
                eid,
                kind,
                len(data),
                data,
                len(t),
                t,
            )
        )
        # FirehoseItem is array_like: [seq, kind, emitted_at_us, tokens, data]
        event = b'[%d,"%s",%d,%d,%s]' % (seq, kind, t_us, tokens, data)
        if seq == 1:
            packed += pack(
                b"HSET", self._meta_bkey, F.FIRST_CHUNK_AT.encode(), repr(t_us / 1e6).encode()
            )
            return packed, 2, self._events_bkey, self._event_head, event
        return packed, 1, self._events_bkey, self._event_head, event

    def terminal(self, seq: int, chunks: int, outcome: Outcome) -> Final:
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
        event = encode(
            FirehoseItem(
                seq=seq,
                kind=kind.decode(),
                emitted_at_us=t_us,
                tokens=outcome.completion_tokens,
                data=msgspec.Raw(payload),
                error_code=outcome.error_code,
            )
        )

        def op(pipe: Pipeline) -> None:
            pipe.xadd(self._chunks_key, fields, id=eid)
            pipe.hset(self._meta_key, mapping=meta)
            self._expire(pipe)
            pipe.zrem(self.keys.active(), self.request.stream_id)

        return Final(op, (self._events_bkey, self._event_head, event), self.ack())

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
