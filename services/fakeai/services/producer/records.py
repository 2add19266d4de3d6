"""What one stream writes to Redis: its log entries, firehose events and meta updates, as items.

Pure construction, no I/O: every method returns a writer item (:data:`.writer.Item`), its
commands packed with the packers of :mod:`fakeai.streams.log` (the owner of the log entry and
firehose formats) and :mod:`fakeai.streams.meta`'s field names, and tagged with the cluster slot
of their keys. Slots and the constant parts of every command are computed once per stream:
the stream's keys (log and meta share one slot), the active set, the firehose partition, and
the request's partition (for the XACK).

Each log entry is written together with its firehose event, which the writer batches per
partition (:mod:`.firehose`). Data entries, the per-chunk hot path, are :class:`.writer.Logged`
items. The terminal entry comes with everything that ends a stream, in the same flush: meta
status and totals, EXPIRE (or PERSIST for "keep forever") of log and meta, ZREM from the active
set, its firehose event (carrying the terminal payload and the request's figures for the
per-request histograms, :class:`~fakeai.wire.messages.RequestStats`: when generation started,
prompt tokens, ``n``, ``max_tokens``), then the XACK of the request (:class:`.writer.Final`).
Generation starts when the records are made: a producer makes them once the request has a slot.
A request parked as failed also gets a record in ``Keys.deadletter()``
(:meth:`StreamRecords.parked`), written before its terminal entry.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fakeai.services.producer.firehose import StreamHead
from fakeai.services.producer.items import Cmds, Final, Logged
from fakeai.streams import PRODUCERS_GROUP, Keys, entry_id
from fakeai.streams.log import Kind, Link, pack_command, pack_entry
from fakeai.streams.log import firehose as wire
from fakeai.streams.log.batch import pack_hset
from fakeai.streams.meta import F
from fakeai.wire import DonePayload, ErrorBody, ErrorPayload, GenerationRequest, encode
from fakeai.wire.messages import RequestStats

__all__ = [
    "DEADLETTER_MAXLEN",
    "EndCode",
    "Outcome",
    "StreamRecords",
    "ack",
    "now_us",
    "request_params",
]


class EndCode:
    """Codes of terminal ``e`` entries this producer writes (``error.code``)."""

    CANCELLED = "cancelled"
    GENERATION_ERROR = "generation_error"
    INVALID_REQUEST = "invalid_request"
    """The request is beyond a cap of the settings, or has a value the builders refuse; the
    message names the cap or the field (``error.param``)."""
    REDIS_FULL = "redis_full"
    """Redis refused the stream's writes for lack of memory (maxmemory, noeviction) for longer
    than the writer retries them; retrying the request later can succeed."""
    REQUEST_FAILED = "request_failed"
    """The request was handed out ``max_deliveries`` times without ending (it killed or
    outlived its producers): parked in ``Keys.deadletter()``, never handed out again."""
    SHUTDOWN = "shutdown"
    """The producer stopped before the stream ended; retrying the request can succeed."""
    TIMEOUT = "timeout"
    """The stream ran past ``settings.max_stream_s`` (counted from the request's arrival)."""
    WRITE_FAILED = "write_failed"
    """Redis refused a write of the stream for another reason than memory (logged)."""


_ERROR_TYPES = {
    EndCode.CANCELLED: "invalid_request_error",
    EndCode.GENERATION_ERROR: "server_error",
    EndCode.INVALID_REQUEST: "invalid_request_error",
    EndCode.REDIS_FULL: "server_error",
    EndCode.REQUEST_FAILED: "server_error",
    EndCode.SHUTDOWN: "server_error",
    EndCode.TIMEOUT: "server_error",
    EndCode.WRITE_FAILED: "server_error",
}
_STATUS_OF_CODE = {EndCode.CANCELLED: "cancelled"}
DEADLETTER_MAXLEN = 10_000
"""About how many dead-letter records ``Keys.deadletter()`` keeps (``MAXLEN ~``)."""
_GROUP = PRODUCERS_GROUP.encode()


def now_us() -> int:
    return time.time_ns() // 1000


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def request_params(body: Mapping[str, Any]) -> tuple[int, int | None]:
    """``(n, max_tokens)`` of a request body: ``n`` (1 when unset) and the first of
    ``max_completion_tokens``, ``max_tokens``, ``max_output_tokens`` that is set (None when
    none is), as vLLM's ``request_params_n`` / ``request_params_max_tokens`` count them."""
    n = _int(body.get("n"))
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        cap = _int(body.get(name))
        if cap is not None:
            return n or 1, cap
    return n or 1, None


def ack(link: Link, request_key: str, msg_id: bytes) -> Cmds:
    """XACK of one request (``msg_id`` of partition ``request_key``) in group ``producers``."""
    return Cmds(
        link.slot(request_key), pack_command(b"XACK", request_key.encode(), _GROUP, msg_id), 1
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a stream ended: ``error_code`` None means done."""

    finish_reason: str | None = None
    completion_tokens: int = 0
    prompt_tokens: int = 0
    error_code: str | None = None
    error_message: str = ""
    error_param: str | None = None
    """The request field an ``invalid_request`` error is about (``error.param``)."""

    @property
    def status(self) -> str:
        if self.error_code is None:
            return "done"
        return _STATUS_OF_CODE.get(self.error_code, "error")


@dataclass(slots=True)
class StreamRecords:
    """Item builder for one stream (bound to its keys, slots, ids and retention)."""

    request: GenerationRequest
    msg_id: bytes
    """The request's entry id in ``request_key`` (acknowledged with the terminal entry)."""
    request_key: str
    """The requests partition the request was read from."""
    keys: Keys
    link: Link
    firehose_partitions: int
    retention_s: int
    _chunks_key: bytes = field(init=False)
    _meta_key: bytes = field(init=False)
    _slot: int = field(init=False)
    _id_head: bytes = field(init=False)
    _stream: StreamHead = field(init=False)
    _created_us: int = field(init=False)
    _started: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        req = self.request
        self._created_us = now_us()
        sid = req.stream_id
        chunks = self.keys.chunks(sid)
        self._chunks_key = chunks.encode()
        self._meta_key = self.keys.meta(sid).encode()
        self._slot = self.link.slot(chunks)  # the meta shares it (one hash tag)
        self._id_head = b"%d-" % req.created_ms
        events = self.keys.events_for(sid, self.firehose_partitions)
        self._stream = StreamHead(
            key=events.encode(),
            slot=self.link.slot(events),
            head=wire.stream_head(sid, req.model, int(req.accepted_at * 1_000_000), req.created_ms),
        )

    @property
    def head(self) -> StreamHead:
        """What the stream's firehose events share; the writer names a stream by it
        (``LogWriter.refused``)."""
        return self._stream

    def entry_id(self, seq: int) -> str:
        return entry_id(self.request.created_ms, seq)

    def started(self, producer: str) -> Cmds:
        """Meta: running on ``producer``, since these records were made (generation start)."""
        self._started = True
        started = repr(self._created_us / 1e6)
        mapping = {F.STATUS: "running", F.PRODUCER: producer, F.STARTED_AT: started}
        return Cmds(self._slot, pack_hset(self._meta_key, mapping), 1)

    def entry(self, seq: int, kind: bytes, data: bytes, tokens: int) -> Logged:
        """A data entry (``c`` chunk or ``r`` whole response) and its firehose event.

        ``data`` is the payload's JSON, encoded once; the firehose carries the same bytes.
        ``kind`` is a one-letter :class:`~fakeai.streams.log.Kind`.
        """
        t_us = now_us()
        packed = pack_entry(self._chunks_key, b"%s%d" % (self._id_head, seq), kind, data, t_us)
        event = wire.event(seq, kind, t_us, tokens, data)
        if seq == 1:
            packed += pack_command(
                b"HSET", self._meta_key, F.FIRST_CHUNK_AT.encode(), repr(t_us / 1e6).encode()
            )
            return Logged(self._slot, packed, 2, self._stream, event)
        return Logged(self._slot, packed, 1, self._stream, event)

    def terminal(self, seq: int, chunks: int, outcome: Outcome) -> Final:
        """The terminal entry (``d`` or ``e``) and everything that ends the stream."""
        t_us = now_us()
        meta: dict[str, str | int | float] = {
            F.STATUS: outcome.status,
            F.FINISHED_AT: t_us / 1e6,
            F.CHUNKS: chunks,
            F.FINISH_REASON: outcome.finish_reason or "",
            F.COMPLETION_TOKENS: outcome.completion_tokens,
            F.PROMPT_TOKENS: outcome.prompt_tokens,
        }
        if outcome.error_code is None:
            kind = Kind.DONE
            payload = encode(
                DonePayload(
                    finish_reason=outcome.finish_reason,
                    chunks=chunks,
                    completion_tokens=outcome.completion_tokens,
                    prompt_tokens=outcome.prompt_tokens,
                )
            )
        else:
            kind = Kind.ERROR
            payload = encode(
                ErrorPayload(
                    error=ErrorBody(
                        message=outcome.error_message or outcome.error_code,
                        type=_ERROR_TYPES.get(outcome.error_code, "server_error"),
                        param=outcome.error_param,
                        code=outcome.error_code,
                    )
                )
            )
            meta[F.ERROR_CODE] = outcome.error_code
            meta[F.ERROR_MESSAGE] = outcome.error_message
        eid = b"%s%d" % (self._id_head, seq)
        parts = [
            pack_entry(self._chunks_key, eid, kind, payload, t_us),
            pack_hset(self._meta_key, meta),
        ]
        for key in (self._chunks_key, self._meta_key):
            if self.retention_s > 0:
                parts.append(pack_command(b"EXPIRE", key, b"%d" % self.retention_s))
            else:
                parts.append(pack_command(b"PERSIST", key))
        active = self.keys.active()
        return Final(
            cmds=Cmds(self._slot, b"".join(parts), len(parts)),
            active=Cmds(
                self.link.slot(active),
                pack_command(b"ZREM", active.encode(), self.request.stream_id.encode()),
                1,
            ),
            stream=self._stream,
            event=wire.event(
                seq,
                kind,
                t_us,
                outcome.completion_tokens,
                payload,
                outcome.error_code,
                self._stats(outcome),
            ),
            after=self.ack(),
        )

    def _stats(self, outcome: Outcome) -> RequestStats:
        n, max_tokens = request_params(self.request.body)
        return RequestStats(
            started_at_us=self._created_us if self._started else 0,
            prompt_tokens=outcome.prompt_tokens,
            n=n,
            max_tokens=max_tokens,
        )

    def ack(self) -> Cmds:
        """XACK of the request (alone: for a stream whose log was already complete)."""
        return ack(self.link, self.request_key, self.msg_id)

    def parked(self, reason: str) -> Cmds:
        """The request's dead-letter record: ``XADD <deadletter> MAXLEN ~ 10000 * sid <sid>
        partition <requests partition key> id <entry id there> reason <reason>``.

        Auto id and at-least-once: a producer that dies between this record and the request's
        XACK leaves the request pending, and the next one parks it again (a second record).
        Trimmed to about the last :data:`DEADLETTER_MAXLEN` records."""
        key = self.keys.deadletter()
        fields = {
            b"sid": self.request.stream_id.encode(),
            b"partition": self.request_key.encode(),
            b"id": self.msg_id,
            b"reason": reason.encode(),
        }
        args = [b"XADD", key.encode(), b"MAXLEN", b"~", b"%d" % DEADLETTER_MAXLEN, b"*"]
        for name, value in fields.items():
            args += (name, value)
        return Cmds(self.link.slot(key), pack_command(*args), 1)
