"""Wire messages (msgspec) shared by the edge, the producers and the consumers."""

from fakeai.wire.messages import (
    CancelSignal,
    DonePayload,
    ErrorBody,
    ErrorPayload,
    FirehoseEvent,
    FirehoseItem,
    FirehoseStream,
    GenerationRequest,
    decode_cancel,
    decode_done,
    decode_error,
    decode_firehose,
    decode_firehose_batch,
    decode_request,
    encode,
)

__all__ = [
    "CancelSignal",
    "DonePayload",
    "ErrorBody",
    "ErrorPayload",
    "FirehoseEvent",
    "FirehoseItem",
    "FirehoseStream",
    "GenerationRequest",
    "decode_cancel",
    "decode_done",
    "decode_error",
    "decode_firehose",
    "decode_firehose_batch",
    "decode_request",
    "encode",
]
