"""What one stream writes to Redis: its log entries, firehose events and meta updates, as ops.

Pure construction, no I/O: every method returns a writer item
(:data:`~fakeai.services.producer.writer.Item`). The formats are the contracts of
:mod:`fakeai.wire.messages` (log entry fields ``k``/``d``/``t``, ids ``<created_ms>-<seq>``)
and :mod:`fakeai.streams.meta` (field names).

Each log entry is written together with its firehose event. Data entries, the per-chunk hot
path, are :data:`~fakeai.services.producer.writer.Packed`: their commands are built directly in
the Redis protocol (RESP, https://redis.io/docs/latest/develop/reference/protocol-spec/) from
parts encoded once per stream, and the firehose event's JSON is assembled the same way; both
are byte for byte what redis-py and ``encode(FirehoseEvent(...))`` would produce (tested).
Firehose partitions are trimmed by age (``XTRIM ... MINID ~ <now - retention>``,
https://redis.io/docs/latest/commands/xtrim/) at most once per second per partition
(:class:`FirehoseTrims`) instead of on every XADD. The terminal entry comes with everything
that ends a stream, in the same round trip: meta status and totals, EXPIRE (or PERSIST for
"keep forever") of log and meta, ZREM from the active set, and the XACK of the request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fakeai.services.producer.writer import Op, Packed, Pipeline
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

__all__ = ["EndCode", "FirehoseTrims", "Outcome", "StreamRecords", "ack_op", "now_us", "pack"]


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


def _bulk(arg: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(arg), arg)


def pack(*args: bytes) -> bytes:
    """One command in the Redis protocol (an array of bulk strings)."""
    return b"*%d\r\n" % len(args) + b"".join(map(_bulk, args))


class FirehoseTrims:
    """Decides when a firehose partition is due for ``XTRIM MINID ~`` (one per process).

    Trimming once per second per partition bounds a partition to the retention plus a second
    of entries, and takes the trim arguments off every XADD.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        self._interval_us = int(interval_s * 1_000_000)
        self._next_us: dict[bytes, int] = {}

    def due(self, key: bytes, t_us: int) -> bool:
        """True (and the next trim scheduled) if ``key`` should be trimmed now."""
        if t_us < self._next_us.get(key, 0):
            return False
        self._next_us[key] = t_us + self._interval_us
        return True


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
    trims: FirehoseTrims = field(default_factory=FirehoseTrims)
    """Shared by every stream of a process, so each partition is trimmed once per interval."""
    _chunks_key: str = field(init=False)
    _meta_key: str = field(init=False)
    _events_key: str = field(init=False)
    _accepted_us: int = field(init=False)
    _id_head: bytes = field(init=False)
    _xadd_log: bytes = field(init=False)
    _xadd_event: bytes = field(init=False)
    _event_head: bytes = field(init=False)
    _event_model: bytes = field(init=False)
    _events_bkey: bytes = field(init=False)
    _meta_bkey: bytes = field(init=False)

    def __post_init__(self) -> None:
        sid = self.request.stream_id
        self._chunks_key = self.keys.chunks(sid)
        self._meta_key = self.keys.meta(sid)
        self._events_key = self.keys.events_for(sid, self.firehose_partitions)
        self._accepted_us = int(self.request.accepted_at * 1_000_000)
        # The constant parts of every data entry's commands and firehose event, encoded once.
        self._id_head = b"%d-" % self.request.created_ms
        self._events_bkey = self._events_key.encode()
        self._meta_bkey = self._meta_key.encode()
        # XADD <chunks> <id> k <kind> d <data> t <t_us>: 9 arguments
        self._xadd_log = b"*9\r\n$4\r\nXADD\r\n" + _bulk(self._chunks_key.encode())
        # XADD <events> * f <event>: 5 arguments
        self._xadd_event = (
            b"*5\r\n$4\r\nXADD\r\n" + _bulk(self._events_bkey) + b"$1\r\n*\r\n$1\r\nf\r\n"
        )
        # FirehoseEvent is array_like: [stream_id, entry_id, kind, model, accepted_at_us,
        # emitted_at_us, tokens, data, error_code]
        self._event_head = b"[" + encode(sid) + b","
        self._event_model = encode(self.request.model) + b",%d," % self._accepted_us

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

    def entry(self, seq: int, kind: bytes, data: bytes, tokens: int) -> Packed:
        """A data entry (``c`` chunk or ``r`` whole response) and its firehose event.

        ``data`` is the payload's JSON, encoded once; the firehose carries the same bytes.
        ``kind`` is one of the one-letter ``KIND_*`` constants (no JSON escaping needed).
        """
        t_us = now_us()
        eid = self._id_head + b"%d" % seq
        t = b"%d" % t_us
        event = b'%s"%s","%s",%s%d,%d,%s,null]' % (
            self._event_head,
            eid,
            kind,
            self._event_model,
            t_us,
            tokens,
            data,
        )
        packed = (
            b"%s$%d\r\n%s\r\n$1\r\nk\r\n$1\r\n%s\r\n$1\r\nd\r\n$%d\r\n%s\r\n$1\r\nt\r\n$%d\r\n%s\r\n%s$%d\r\n%s\r\n"
            % (
                self._xadd_log,
                len(eid),
                eid,
                kind,
                len(data),
                data,
                len(t),
                t,
                self._xadd_event,
                len(event),
                event,
            )
        )
        commands = 2
        if seq == 1:
            packed += pack(
                b"HSET", self._meta_bkey, F.FIRST_CHUNK_AT.encode(), repr(t_us / 1e6).encode()
            )
            commands += 1
        if self.trims.due(self._events_bkey, t_us):
            minid = t_us // 1000 - self.firehose_retention_s * 1000
            packed += pack(b"XTRIM", self._events_bkey, b"MINID", b"~", b"%d" % minid)
            commands += 1
        return packed, commands

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
