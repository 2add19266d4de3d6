"""Messages that cross process boundaries, as msgspec structs with codecs built once.

Schema evolution (https://jcristharif.com/msgspec/schema-evolution.html): new fields get
defaults and go last; fields are never reordered or renamed.

The payloads of the stream log's entries (:class:`DonePayload`, :class:`ErrorPayload`) and of
the firehose (:class:`FirehoseStream`, :class:`FirehoseEvent`) are defined here; the entry
formats themselves, their one packer and their one parser, belong to :mod:`fakeai.streams.log`.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "CancelSignal",
    "DonePayload",
    "ErrorBody",
    "ErrorPayload",
    "FirehoseEvent",
    "FirehoseItem",
    "FirehoseStream",
    "GenerationRequest",
    "RequestStats",
    "decode_cancel",
    "decode_done",
    "decode_error",
    "decode_firehose",
    "decode_firehose_batch",
    "decode_request",
    "encode",
]


Endpoint = Literal["chat", "completion"]
_NULL = b"null"


class GenerationRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What the edge publishes on ``Keys.requests()`` (field ``r``) for the producers."""

    stream_id: str
    endpoint: Endpoint
    model: str
    created_ms: int
    """Creation time, ms since epoch: the ``created`` of every chunk and the entry-id time part."""
    accepted_at: float
    """Unix seconds when the edge received the request: the origin of TTFT."""
    body: dict[str, Any]
    """The validated OpenAI request body (JSON-compatible)."""
    stream: bool = True
    ttft_ms: float | None = None
    itl_ms: float | None = None
    seed: int | None = None
    retention_s: int | None = None


class CancelSignal(msgspec.Struct, frozen=True, kw_only=True):
    """Entry of ``Keys.cancels()`` (field ``c``)."""

    stream_id: str
    reason: str = "cancelled"
    at: float = 0.0


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=False):
    """OpenAI's error object: ``{"message", "type", "param", "code"}``."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorPayload(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of a terminal ``e`` entry; its JSON is the SSE ``data: {"error": ...}`` frame."""

    error: ErrorBody


class DonePayload(msgspec.Struct, frozen=True, kw_only=True):
    """Payload of a terminal ``d`` entry."""

    finish_reason: str | None = None
    chunks: int = 0
    completion_tokens: int = 0
    prompt_tokens: int = 0


class RequestStats(msgspec.Struct, frozen=True, array_like=True):
    """What a stream's terminal firehose event adds for the per-request histograms (vLLM's
    queue, prefill and decode times, prompt tokens, ``n``, ``max_tokens``):
    ``[started_at_us, prompt_tokens, n, max_tokens]``."""

    started_at_us: int = 0
    """When a producer took the request up to generate it (0: never, for example a request
    refused or parked before generation)."""
    prompt_tokens: int = 0
    n: int = 1
    max_tokens: int | None = None
    """``max_completion_tokens``, ``max_tokens`` or ``max_output_tokens`` of the request (the
    first one set), None when the request sets none."""


class FirehoseEvent(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """One chunk or terminal entry of one stream, as observers see it.

    Also the older one-event firehose entry format (field ``f``); batches (field ``b``) carry
    :class:`FirehoseStream` groups, which :meth:`FirehoseStream.expand` turns into these.

    ``array_like`` keeps it small on the wire: ``["sid","1700000000000-3",...]``.
    """

    stream_id: str
    entry_id: str
    kind: str
    """``c`` chunk, ``r`` response, ``d`` done, ``e`` error (as in the log)."""
    model: str
    accepted_at_us: int
    emitted_at_us: int
    tokens: int = 0
    """Output tokens this entry carries (chunks), or the stream's total (terminal entries)."""
    data: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(_NULL))
    """The chunk JSON, so observers can print the text; JSON ``null`` when absent.

    Typed as plain ``Raw`` (not ``Raw | None``): msgspec cannot decode a non-null value into
    that union. Read it through :attr:`payload`.
    """
    error_code: str | None = None
    stats: RequestStats | None = None
    """On terminal events: the request's figures for the per-request histograms (None in
    entries written before they existed, and on chunks)."""

    @property
    def payload(self) -> bytes | None:
        """The carried JSON bytes, or None when the event carries none."""
        return _payload(self.data)


def _payload(data: msgspec.Raw) -> bytes | None:
    raw = bytes(data)
    return None if raw == _NULL else raw


class FirehoseItem(msgspec.Struct, frozen=True, array_like=True):
    """One event of a :class:`FirehoseStream`: ``[seq, kind, emitted_at_us, tokens, data,
    error_code, stats]``; entry id ``<created_ms>-<seq>``. Fields as in :class:`FirehoseEvent`."""

    seq: int
    kind: str
    emitted_at_us: int
    tokens: int = 0
    data: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(_NULL))
    error_code: str | None = None
    stats: RequestStats | None = None

    @property
    def payload(self) -> bytes | None:
        """The carried JSON bytes, or None when the event carries none."""
        return _payload(self.data)


class FirehoseStream(msgspec.Struct, frozen=True, array_like=True):
    """The events of one stream in one batch entry (field ``b``): what they share, once."""

    stream_id: str
    model: str
    accepted_at_us: int
    created_ms: int
    events: list[FirehoseItem]

    def expand(self) -> list[FirehoseEvent]:
        """The events as stand-alone :class:`FirehoseEvent` objects (for observers)."""
        sid, model, acc, head = self.stream_id, self.model, self.accepted_at_us, self.created_ms
        return [
            FirehoseEvent(
                stream_id=sid,
                entry_id=f"{head}-{e.seq}",
                kind=e.kind,
                model=model,
                accepted_at_us=acc,
                emitted_at_us=e.emitted_at_us,
                tokens=e.tokens,
                data=e.data,
                error_code=e.error_code,
                stats=e.stats,
            )
            for e in self.events
        ]


_encoder = msgspec.json.Encoder()
_request_decoder = msgspec.json.Decoder(GenerationRequest)
_cancel_decoder = msgspec.json.Decoder(CancelSignal)
_error_decoder = msgspec.json.Decoder(ErrorPayload)
_done_decoder = msgspec.json.Decoder(DonePayload)
_firehose_decoder = msgspec.json.Decoder(FirehoseEvent)
_batch_decoder = msgspec.json.Decoder(list[FirehoseStream])


def encode(obj: Any) -> bytes:
    """Compact JSON (no spaces), the one encoder for every wire message."""
    return _encoder.encode(obj)


def decode_request(data: bytes) -> GenerationRequest:
    return _request_decoder.decode(data)


def decode_cancel(data: bytes) -> CancelSignal:
    return _cancel_decoder.decode(data)


def decode_error(data: bytes) -> ErrorPayload:
    return _error_decoder.decode(data)


def decode_done(data: bytes) -> DonePayload:
    return _done_decoder.decode(data)


def decode_firehose(data: bytes) -> FirehoseEvent:
    return _firehose_decoder.decode(data)


def decode_firehose_batch(data: bytes) -> list[FirehoseStream]:
    """The ``b`` field of a firehose entry."""
    return _batch_decoder.decode(data)
