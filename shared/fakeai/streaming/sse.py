"""Wire formatters: Server-Sent Events, JSON Lines and plain text.

Every method is a static method, so both ``SSEFormatter.format(chunk)`` (as the framework's
documentation shows) and an instance used as a :class:`~fakeai.streaming.base.ChunkFormatter`
work. JSON is compact (no spaces) and serialized once with msgspec.

SSE follows the WHATWG HTML "Server-sent events" section (9.2.6, event stream interpretation):
an event is ``field: value`` lines ended by a blank line; a value cannot hold a line break, so
multi-line text is sent as several ``data:`` lines, which the client joins with ``\\n``. Chat
and completion chunks carry **no** ``event:`` line: OpenAI's streams have none, and SDKs that
see a named event treat it as something else (openai-python dispatches on ``event``).

Compatibility surface: every formatter of FakeAI 0.3's ``fakeai.streaming.sse`` with its calls
(``SSEFormatter.format_custom_event``, ``OpenAIChatFormatter.format_chat_chunk``,
``OpenAICompletionFormatter.format_completion_chunk``). Upstream wrote ``event: <chunk_type>``
before chat chunks and its own error object; these keep OpenAI's wire format instead
(``docs/library.md`` lists the differences).

One encoder builds every SSE frame of the project: :func:`sse_frame` (bytes in, bytes out) and
:func:`sse_comment`. The formatters below, the edge's wire formats and its dashboard feed all
call it, so the framing rules (field order, line splitting, the blank line) live in one place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from fakeai.streaming.base import ChunkFormatter, StreamChunk, StreamError

__all__ = [
    "JSONLinesFormatter",
    "OpenAIChatFormatter",
    "OpenAICompletionFormatter",
    "PlainTextFormatter",
    "SSEFormatter",
    "chunk_text",
    "encode_json",
    "sse_comment",
    "sse_frame",
]


def _enc_hook(obj: Any) -> Any:
    # Pydantic models (the HTTP layer's) may end up in chunk data; everything else is an error.
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    raise NotImplementedError(f"cannot serialize {type(obj).__name__} to JSON")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


def encode_json(obj: Any) -> bytes:
    """Compact JSON bytes (UTF-8) of ``obj``, as every formatter writes it."""
    return _encoder.encode(obj)


_LINE_BREAK_BYTES = re.compile(rb"\r\n|\r|\n")


def sse_frame(
    data: bytes | None,
    *,
    event: bytes | None = None,
    id: bytes | None = None,
    retry: int | None = None,
) -> bytes:
    """One SSE event: ``event:``, ``id:``, ``retry:`` lines (each when given, in that order),
    then ``data:`` (one line per line of ``data``; none when ``data`` is None), then the blank
    line that dispatches it.

    ``event`` and ``id`` must hold no CR, LF or NUL (WHATWG: a line break ends the field; an id
    with NUL is ignored): callers pass ids and names they made, or check them first
    (:class:`SSEFormatter` does). The edge calls this per event and client, so the common
    shapes are one ``%`` format each; ``10 in data`` is a memchr, unlike ``b"\\n" in data``.
    """
    if data is not None and (10 in data or 13 in data):
        data = b"\ndata: ".join(_LINE_BREAK_BYTES.split(data))
    if retry is None:
        if data is None:
            head = b"" if event is None else b"event: %b\n" % event
            return head + (b"\n" if id is None else b"id: %b\n\n" % id)
        if event is None:
            if id is None:
                return b"data: %b\n\n" % data
            return b"id: %b\ndata: %b\n\n" % (id, data)
        if id is None:
            return b"event: %b\ndata: %b\n\n" % (event, data)
        return b"event: %b\nid: %b\ndata: %b\n\n" % (event, id, data)
    head = b"" if event is None else b"event: %b\n" % event
    if id is not None:
        head += b"id: %b\n" % id
    head += b"retry: %d\n" % retry
    return head + (b"\n" if data is None else b"data: %b\n\n" % data)


def sse_comment(text: bytes = b"") -> bytes:
    """A comment line (``: ping``), which clients ignore; keeps idle connections open."""
    return b": %b\n\n" % text if text else b":\n\n"


def _check_field(name: str, value: str) -> str:
    # WHATWG: a line break would end the field early; an id with NUL is ignored by clients.
    if "\n" in value or "\r" in value or "\0" in value:
        raise ValueError(f"{name} must not contain line breaks or NUL; got {value!r}")
    return value


def _id(event_id: str | None) -> bytes | None:
    return None if event_id is None else _check_field("event_id", event_id).encode()


def _retry(retry_ms: int | None) -> int | None:
    if retry_ms is not None and (
        isinstance(retry_ms, bool) or not isinstance(retry_ms, int) or retry_ms < 0
    ):
        raise ValueError(f"retry_ms must be an integer >= 0; got {retry_ms!r}")
    return retry_ms


def _data(data: Any) -> bytes:
    """A chunk's ``data:`` payload: str as-is, anything else as compact JSON."""
    return data.encode() if isinstance(data, str) else _encoder.encode(data)


class SSEFormatter(ChunkFormatter):
    """``data: <compact JSON>\\n\\n`` per chunk, ``data: [DONE]\\n\\n`` at the end."""

    @staticmethod
    def format(
        chunk: StreamChunk, *, event_id: str | None = None, retry_ms: int | None = None
    ) -> str:
        """One SSE event for ``chunk``; ``event_id``/``retry_ms`` add ``id:``/``retry:`` lines.

        Dict/list data is sent as compact JSON; str data as-is (one ``data:`` line per line).
        """
        payload = _data(chunk.data)
        if event_id is None and retry_ms is None:
            return sse_frame(payload).decode()
        return sse_frame(payload, id=_id(event_id), retry=_retry(retry_ms)).decode()

    @staticmethod
    def format_bytes(payload: bytes, event_id: str | None = None) -> bytes:
        """One SSE event for pre-serialized single-line JSON ``payload`` (the hot path)."""
        if 10 in payload or 13 in payload:
            raise ValueError("payload must be single-line JSON (no CR or LF bytes)")
        return sse_frame(payload, id=_id(event_id))

    @staticmethod
    def format_error(error: StreamError, *, event_id: str | None = None) -> str:
        """``data: {"error": {message, type, param, code}}`` (OpenAI's error object)."""
        return sse_frame(_encoder.encode({"error": error.to_dict()}), id=_id(event_id)).decode()

    @staticmethod
    def format_done(*, event_id: str | None = None) -> str:
        """OpenAI's end-of-stream sentinel."""
        return sse_frame(b"[DONE]", id=_id(event_id)).decode()

    @staticmethod
    def format_custom_event(event_type: str, data: Any, *, event_id: str | None = None) -> str:
        """A named event: ``event: <event_type>`` then ``data`` (str as-is, else JSON).

        With ``event_id`` the ``id:`` line comes first, before ``event:`` (as this method has
        always written it; the order of fields does not matter to clients).
        """
        frame = sse_frame(_data(data), event=_check_field("event_type", event_type).encode())
        eid = _id(event_id)
        return (frame if eid is None else b"id: %b\n%b" % (eid, frame)).decode()

    @staticmethod
    def format_comment(text: str = "") -> str:
        """A comment line (``: ping``), ignored by clients; keeps idle connections open."""
        return sse_comment(_check_field("text", text).encode()).decode()


class JSONLinesFormatter(ChunkFormatter):
    """One JSON object per line: ``{"type":"data","sequence":N,"id":…,"data":…}``, then
    ``{"type":"error","error":{…}}`` or ``{"type":"done"}``."""

    @staticmethod
    def format(chunk: StreamChunk) -> str:
        line = _encoder.encode(
            {
                "type": "data",
                "sequence": chunk.sequence_number,
                "id": chunk.chunk_id,
                "data": chunk.data,
            }
        )
        return line.decode() + "\n"

    @staticmethod
    def format_bytes(payload: bytes, sequence: int, chunk_id: str) -> bytes:
        """The data line for pre-serialized JSON ``payload`` (no re-encoding of the payload)."""
        return (
            b'{"type":"data","sequence":'
            + str(int(sequence)).encode()
            + b',"id":'
            + _encoder.encode(chunk_id)
            + b',"data":'
            + payload
            + b"}\n"
        )

    @staticmethod
    def format_error(error: StreamError) -> str:
        return _encoder.encode({"type": "error", "error": error.to_dict()}).decode() + "\n"

    @staticmethod
    def format_done() -> str:
        return '{"type":"done"}\n'


def _delta_text(delta: Mapping[str, Any]) -> str:
    content = delta.get("content")
    if isinstance(content, str):
        return content
    text = delta.get("text")
    if isinstance(text, str):
        return text
    audio = delta.get("audio")
    if isinstance(audio, Mapping):
        transcript = audio.get("transcript")
        if isinstance(transcript, str):
            return transcript
    return ""


def chunk_text(data: Any) -> str:
    """The text a chunk payload carries, "" when it carries none.

    Handles OpenAI chat chunks (every choice's ``delta.content``, or an audio delta's
    ``transcript``), legacy completion chunks (``choices[].text``), Realtime text and
    transcript delta events (``{"type": "response.output_text.delta", "delta": "…"}``), bare
    deltas (``{"content": …}``, ``{"text": …}``) and str payloads.
    """
    if isinstance(data, str):
        return data
    if not isinstance(data, Mapping):
        return ""
    choices = data.get("choices")
    if isinstance(choices, list):
        parts = []
        for choice in choices:
            if not isinstance(choice, Mapping):
                continue
            delta = choice.get("delta")
            if isinstance(delta, Mapping):
                parts.append(_delta_text(delta))
            else:
                text = choice.get("text")
                if isinstance(text, str):
                    parts.append(text)
        return parts[0] if len(parts) == 1 else "".join(parts)
    event_type = data.get("type")
    if isinstance(event_type, str):
        delta = data.get("delta")
        if (
            isinstance(delta, str)
            and event_type.endswith(".delta")
            and ("text" in event_type or "transcript" in event_type)
        ):
            return delta
        return ""
    return _delta_text(data)


class PlainTextFormatter(ChunkFormatter):
    """The text only (see :func:`chunk_text`).

    ``format_done()`` is ``""``: the concatenated output is exactly the generated text, so a
    resumed text stream equals an uninterrupted one. ``format_error`` starts on a new line.
    """

    @staticmethod
    def format(chunk: StreamChunk) -> str:
        return chunk_text(chunk.data)

    @staticmethod
    def format_error(error: StreamError) -> str:
        return f"\n[error] {error.message}\n"

    @staticmethod
    def format_done() -> str:
        return ""


def _chunk_event(kind: str, chunk_id: str, model: str, created: int, choice: Any) -> str:
    """One SSE event of an OpenAI stream chunk with a single choice."""
    data = {"id": chunk_id, "object": kind, "created": created, "model": model, "choices": [choice]}
    return sse_frame(_encoder.encode(data)).decode()


class OpenAIChatFormatter(SSEFormatter):
    """:class:`SSEFormatter` plus one-call ``chat.completion.chunk`` events."""

    @staticmethod
    def format_chat_chunk(
        chunk_id: str,
        model: str,
        created: int,
        delta: Mapping[str, Any],
        finish_reason: str | None = None,
        index: int = 0,
    ) -> str:
        """``data: {id, object: "chat.completion.chunk", created, model, choices: [{index,
        delta, logprobs, finish_reason}]}``; a ``finish_reason`` found inside ``delta`` is moved
        beside it, where OpenAI's clients read it."""
        if "finish_reason" in delta:
            delta = dict(delta)
            moved = delta.pop("finish_reason")
            finish_reason = finish_reason if finish_reason is not None else moved
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _chunk_event("chat.completion.chunk", chunk_id, model, created, choice)


class OpenAICompletionFormatter(SSEFormatter):
    """:class:`SSEFormatter` plus one-call legacy ``text_completion`` events."""

    @staticmethod
    def format_completion_chunk(
        chunk_id: str,
        model: str,
        created: int,
        text: str,
        finish_reason: str | None = None,
        index: int = 0,
    ) -> str:
        """``data: {id, object: "text_completion", created, model, choices: [{text, index,
        logprobs, finish_reason}]}``."""
        choice = {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}
        return _chunk_event("text_completion", chunk_id, model, created, choice)
