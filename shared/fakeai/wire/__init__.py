"""Wire messages (msgspec) shared by the edge, the producers and the consumers."""

from fakeai.wire.messages import (
    KIND_CHUNK,
    KIND_DONE,
    KIND_ERROR,
    KIND_RESPONSE,
    CancelSignal,
    DonePayload,
    ErrorBody,
    ErrorPayload,
    FirehoseEvent,
    GenerationRequest,
    decode_cancel,
    decode_done,
    decode_error,
    decode_firehose,
    decode_request,
    encode,
)

__all__ = [
    "KIND_CHUNK",
    "KIND_DONE",
    "KIND_ERROR",
    "KIND_RESPONSE",
    "CancelSignal",
    "DonePayload",
    "ErrorBody",
    "ErrorPayload",
    "FirehoseEvent",
    "GenerationRequest",
    "decode_cancel",
    "decode_done",
    "decode_error",
    "decode_firehose",
    "decode_request",
    "encode",
]
