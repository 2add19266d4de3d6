"""The fields of a stream's meta hash (``Keys.meta(sid)``), and a typed view of it.

Written by the edge at creation (``queued``) and by the producer as the stream runs and ends.
Times are Unix seconds (float, as text); counts are integers (as text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["FINAL_STATUSES", "F", "StreamMeta"]


class F:
    """Field names."""

    STATUS: Final = "status"
    """queued, running, done, error, cancelled"""
    KIND: Final = "kind"
    """chat or completion"""
    MODEL: Final = "model"
    CREATED_MS: Final = "created_ms"
    ACCEPTED_AT: Final = "accepted_at"
    STREAM: Final = "stream"
    """1 for a streaming request, 0 for a whole response"""
    PRODUCER: Final = "producer"
    STARTED_AT: Final = "started_at"
    FIRST_CHUNK_AT: Final = "first_chunk_at"
    FINISHED_AT: Final = "finished_at"
    CHUNKS: Final = "chunks"
    FINISH_REASON: Final = "finish_reason"
    PROMPT_TOKENS: Final = "prompt_tokens"
    COMPLETION_TOKENS: Final = "completion_tokens"
    ERROR_CODE: Final = "error_code"
    ERROR_MESSAGE: Final = "error_message"
    CANCEL_REQUESTED: Final = "cancel_requested"
    OWNER: Final = "owner"
    """The name of the API key (tenant) that created the stream; absent on an open server."""


FINAL_STATUSES: Final = frozenset({"done", "error", "cancelled"})


def _f(raw: dict[str, str], name: str) -> float | None:
    v = raw.get(name)
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


def _i(raw: dict[str, str], name: str) -> int | None:
    v = _f(raw, name)
    return int(v) if v is not None else None


@dataclass(frozen=True, slots=True)
class StreamMeta:
    status: str
    kind: str | None
    model: str | None
    created_ms: int | None
    accepted_at: float | None
    stream: bool
    producer: str | None
    started_at: float | None
    first_chunk_at: float | None
    finished_at: float | None
    chunks: int | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    error_code: str | None
    error_message: str | None
    cancel_requested: bool
    owner: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes] | dict[str, str]) -> StreamMeta:
        h = {
            (k.decode() if isinstance(k, bytes) else k): (
                v.decode(errors="replace") if isinstance(v, bytes) else v
            )
            for k, v in raw.items()
        }
        return cls(
            status=h.get(F.STATUS, "unknown"),
            kind=h.get(F.KIND),
            model=h.get(F.MODEL),
            created_ms=_i(h, F.CREATED_MS),
            accepted_at=_f(h, F.ACCEPTED_AT),
            stream=h.get(F.STREAM, "1") != "0",
            producer=h.get(F.PRODUCER),
            started_at=_f(h, F.STARTED_AT),
            first_chunk_at=_f(h, F.FIRST_CHUNK_AT),
            finished_at=_f(h, F.FINISHED_AT),
            chunks=_i(h, F.CHUNKS),
            finish_reason=h.get(F.FINISH_REASON) or None,
            prompt_tokens=_i(h, F.PROMPT_TOKENS),
            completion_tokens=_i(h, F.COMPLETION_TOKENS),
            error_code=h.get(F.ERROR_CODE) or None,
            error_message=h.get(F.ERROR_MESSAGE) or None,
            cancel_requested=h.get(F.CANCEL_REQUESTED, "0") not in ("", "0"),
            owner=h.get(F.OWNER) or None,
        )
