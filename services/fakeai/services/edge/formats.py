"""Wire encodings of log entries: SSE, JSON Lines and plain text (bytes in, bytes out).

The chunk JSON is written exactly as the producer stored it, never decoded and re-encoded
(only the text format parses it, to pull the text out).

SSE (WHATWG HTML §9.2, https://html.spec.whatwg.org/multipage/server-sent-events.html)::

    id: <entry id>            every event names its log entry: Last-Event-ID resumes after it
    retry: <ms>               on the first event only
    data: <chunk JSON>        one line (compact JSON); no ``event:`` line, as OpenAI sends it

A terminal ``d`` becomes ``data: [DONE]`` (with the terminal entry's id); a terminal ``e``
becomes ``data: {"error": {...}}`` then ``data: [DONE]``. An interruption by the edge (slow
client, shutdown) is an error event *without* ``id:``, so the client's Last-Event-ID stays on
the last chunk it really received, then ``data: [DONE]``.

Streams of typed events (``named``: the Responses API, realtime responses, speech,
transcription and image streams; :func:`fakeai.streams.positions.is_event_stream`): each event
also names its type, as OpenAI sends them
(https://platform.openai.com/docs/api-reference/responses-streaming)::

    event: <type>             the event's ``type`` (the JSON's first member, as the producer
    id: <entry id>            encodes it); sequence_number = entry seq - 1
    data: <event JSON>

There is no ``data: [DONE]``: a terminal ``d`` writes nothing (``response.completed`` or
``response.incomplete`` came before it), a terminal ``e`` becomes the ``error`` event
``{"type":"error","code","message","param","sequence_number"}`` with the next sequence number,
and an interruption by the edge the same event without ``id:`` or ``sequence_number``.

JSON Lines: ``{"id","type":"chunk","data"}``, ``{"id","type":"done"}``,
``{"id","type":"error","error"}`` (``"response"`` for a whole non-streaming response).
Text: the generated text only; an error adds one ``[error] <code>: <message>`` line.

Binary payloads (speech and realtime audio, PNG images) are stored once, base64 inside their
event's JSON as OpenAI's events carry them: SSE and JSON Lines pass that JSON on unchanged
(an export holds the bytes exactly), and the text format, which shows generated text only,
leaves them out. The raw audio answer of ``/v1/audio/speech`` decodes them
(:class:`fakeai.services.edge.audio.RawAudio`). Per stream family, ``format=text`` gives:

- realtime responses: their text and audio transcript deltas (the audio is left out);
- transcriptions: the transcript;
- speech and images: nothing (an empty body), since they carry no text; the answer says so
  in ``X-FakeAI-Text-Omitted: audio`` or ``image`` (:func:`text_omits`), also on realtime
  responses (``audio``), whose text is only part of what they carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgspec

from fakeai.errors import BadRequest
from fakeai.streaming.sse import chunk_text as sse_chunk_text
from fakeai.streaming.sse import sse_frame
from fakeai.streams.log import Entry, Kind
from fakeai.streams.positions import family_of
from fakeai.wire import ErrorBody, decode_error, encode

__all__ = [
    "FORMATS",
    "Format",
    "Formatter",
    "choose_format",
    "chunk_text",
    "event_type",
    "formatter",
    "text_omits",
]

Format = Literal["sse", "jsonl", "text"]
FORMATS: tuple[Format, ...] = ("sse", "jsonl", "text")

MEDIA_TYPES: dict[Format, str] = {
    "sse": "text/event-stream",
    "jsonl": "application/x-ndjson",
    "text": "text/plain",
}

_DONE = sse_frame(b"[DONE]")
_TEXT_OMITS = {"speech": "audio", "realtime": "audio", "image": "image"}
_json_decode = msgspec.json.Decoder().decode


def choose_format(query: str | None, accept: str | None) -> Format:
    """``?format=`` wins; else the Accept header; else SSE."""
    if query:
        if query not in FORMATS:
            raise BadRequest(
                f"format: expected one of {', '.join(FORMATS)}; got {query!r}", param="format"
            )
        return query
    a = (accept or "").lower()
    if "text/event-stream" in a:
        return "sse"
    if "application/x-ndjson" in a or "application/jsonl" in a:
        return "jsonl"
    if "text/plain" in a:
        return "text"
    return "sse"


_TEXT_DELTA = b'{"type":"response.output_text.delta"'
_TYPE_HEAD = b'{"type":"'


class _TextDelta(msgspec.Struct):
    delta: str = ""


class _Typed(msgspec.Struct):
    type: str = "message"


_delta_decoder = msgspec.json.Decoder(_TextDelta)
_typed_decoder = msgspec.json.Decoder(_Typed)


def event_type(data: bytes) -> bytes:
    """The ``type`` of a Responses event's JSON: read off its head when ``type`` comes first
    (as the producer encodes every event), else parsed."""
    if data.startswith(_TYPE_HEAD):
        end = data.find(b'"', len(_TYPE_HEAD))
        if end > 0:
            return data[len(_TYPE_HEAD) : end]
    try:
        return _typed_decoder.decode(data).type.encode()
    except msgspec.DecodeError:
        return b"message"


class _Message(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    text: str | None = None
    message: _Message | None = None


class _Response(msgspec.Struct):
    choices: list[_Choice] = []


_response_decoder = msgspec.json.Decoder(_Response)


def chunk_text(data: bytes, *, whole: bool = False) -> str:
    """The text a chunk carries (``whole``: a non-streaming response); "" if none."""
    try:
        if data.startswith(_TEXT_DELTA):  # a Responses API text delta
            return _delta_decoder.decode(data).delta
        if not whole:
            return sse_chunk_text(_json_decode(data))
        parts = []
        for c in _response_decoder.decode(data).choices:
            parts.append(c.text or (c.message.content if c.message else None) or "")
        return "".join(parts)
    except msgspec.DecodeError:
        return ""


def _error_of(entry: Entry) -> ErrorBody:
    try:
        return decode_error(entry.data).error
    except msgspec.DecodeError:
        return ErrorBody(message="the stream failed", type="server_error", code="stream_error")


def _error_event(body: ErrorBody, sequence_number: int | None = None) -> dict[str, object]:
    """The Responses API's ``error`` event for ``body``."""
    event: dict[str, object] = {
        "type": "error",
        "code": body.code,
        "message": body.message,
        "param": body.param,
    }
    if sequence_number is not None:
        event["sequence_number"] = sequence_number
    return event


@dataclass(frozen=True, slots=True)
class Formatter:
    """Turns entries into bytes for one response; ``retry_ms`` goes on the first SSE event;
    ``named``: a Responses API stream (SSE events named by their type, no ``[DONE]``)."""

    format: Format
    retry_ms: int
    named: bool = False

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]

    def prime(self, position: str) -> bytes:
        """SSE priming event: the resume position and ``retry:``, no data (so it is not
        dispatched, but the client's Last-Event-ID is set). Empty for other formats."""
        if self.format != "sse":
            return b""
        return sse_frame(None, id=position.encode(), retry=self.retry_ms)

    def entry(self, e: Entry, *, first: bool = False) -> bytes:
        if self.format == "sse":
            return self._sse(e, first)
        if self.format == "jsonl":
            return self._jsonl(e)
        return self._text(e)

    def interrupted(self, body: ErrorBody) -> bytes:
        """The end of a response the edge cut short (resumable): error, then the end marker."""
        if self.format == "sse":
            if self.named:
                return sse_frame(encode(_error_event(body)), event=b"error")
            return sse_frame(encode({"error": body})) + _DONE
        if self.format == "jsonl":
            return b'{"id":null,"type":"error","error":' + encode(body) + b"}\n"
        return f"\n[error] {body.code}: {body.message}\n".encode()

    def _sse(self, e: Entry, first: bool) -> bytes:
        if self.named:
            return self._named(e, first)
        if not first:
            return e.sse  # built once per entry, shared by every client (see Entry.sse)
        # The first event of a response also carries ``retry:``, after its ``id:`` line.
        if e.kind == Kind.DONE:
            return sse_frame(b"[DONE]", id=e.id, retry=self.retry_ms)
        frame = sse_frame(e.data, id=e.id, retry=self.retry_ms)
        return frame + _DONE if e.kind == Kind.ERROR else frame

    def _named(self, e: Entry, first: bool) -> bytes:
        if e.kind == Kind.DONE:
            return b""
        if e.kind == Kind.ERROR:
            name, data = b"error", encode(_error_event(_error_of(e), e.seq - 1))
        else:
            name, data = event_type(e.data), e.data
        return sse_frame(data, event=name, id=e.id, retry=self.retry_ms if first else None)

    def _jsonl(self, e: Entry) -> bytes:
        head = b'{"id":"' + e.id + b'","type":'
        if e.kind == Kind.DONE:
            return head + b'"done"}\n'
        if e.kind == Kind.ERROR:
            return head + b'"error","error":' + encode(_error_of(e)) + b"}\n"
        kind = b'"response"' if e.kind == Kind.RESPONSE else b'"chunk"'
        return head + kind + b',"data":' + e.data + b"}\n"

    def _text(self, e: Entry) -> bytes:
        if e.kind == Kind.DONE:
            return b""
        if e.kind == Kind.ERROR:
            err = _error_of(e)
            return f"\n[error] {err.code}: {err.message}\n".encode()
        return chunk_text(e.data, whole=e.kind == Kind.RESPONSE).encode()


def text_omits(stream_id: str) -> str | None:
    """What the text format leaves out of stream ``stream_id`` (``audio``, ``image``), None
    when it shows all it carries (module docstring)."""
    return _TEXT_OMITS.get(family_of(stream_id) or "")


def formatter(fmt: Format, retry_ms: int, *, named: bool = False) -> Formatter:
    return Formatter(fmt, retry_ms, named)
