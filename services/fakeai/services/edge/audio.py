"""Audio endpoints: ``POST /v1/audio/speech`` and ``POST /v1/audio/transcriptions``.

Both become streams through :func:`.publish.open_stream` (admission, record, publish: as chat),
whose log entries are the OpenAI stream events (:mod:`fakeai.content.speech`,
:mod:`fakeai.content.transcription`), produced at the model's pace. So every answer here can
be resumed, replayed, exported and observed as any stream (``GET /v1/streams/{X-Stream-Id}``
gives the events as named SSE).

Speech (``speech_…``): the answer is the audio itself, chunked as it is generated
(``Content-Type: audio/wav`` or ``audio/pcm``, by ``response_format``; without one: WAV, since
OpenAI's default, MP3, needs an encoder this server does not ship; ``mp3``, ``opus``, ``aac``,
``flac`` are a 400 naming the formats offered). The log stores each delta's bytes once,
base64 inside its event; this answer decodes them (:class:`RawAudio`). A stream that fails
after the first byte cannot say so inside raw audio: the connection is aborted without the
chunked body's end, so the client sees a truncated transfer, never a short file that looks
whole; the stream's error stays in its log. ``stream_format: "sse"``: the events as SSE
(``speech.audio.delta`` ..., ``speech.audio.done``), named by type.

Transcriptions (``trsc_…``, multipart upload ``file`` + ``model``): ``stream=true`` answers
SSE ``transcript.text.delta`` ... ``transcript.text.done``; otherwise the transcript once it is
complete, as ``response_format`` asks: ``json`` (default: ``text`` and ``usage``), ``text``, or
``verbose_json`` (``task``, ``language``, ``duration``, ``text``, one segment). ``srt`` and
``vtt`` are a 400. The audio is never stored: the producer gets its duration, size and digest
(:func:`fakeai.content.transcription.upload_facts`), which the transcript depends on.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from fakeai.content.speech import media_type, speech_format
from fakeai.content.transcription import upload_facts
from fakeai.errors import ApiError, BadRequest, ServiceUnavailable
from fakeai.services.edge.faults import inject
from fakeai.services.edge.formats import Formatter, event_type
from fakeai.services.edge.interrupted import StreamInterrupted
from fakeai.services.edge.media_schemas import SpeechRequest, check_content
from fakeai.services.edge.openai_routes import error_status, interrupted_answer, whole_response
from fakeai.services.edge.publish import Opened, decode_body, open_stream
from fakeai.services.edge.responses import stream_response
from fakeai.services.edge.schemas import validate
from fakeai.services.edge.state import EdgeState, edge_state
from fakeai.streams.log import Entry, Kind
from fakeai.wire import ErrorBody, decode_error

__all__ = ["AudioStreamFailed", "RawAudio", "events_answer", "routes", "stream_events"]

_SPEECH_DELTA = b"speech.audio.delta"
_TRANSCRIPT_FORMATS = ("json", "text", "verbose_json")


class AudioStreamFailed(Exception):
    """A raw audio answer cannot go on (module docstring): the connection is aborted."""


class _Delta(msgspec.Struct):
    audio: str = ""


_delta_decoder = msgspec.json.Decoder(_Delta)


@dataclass(frozen=True, slots=True)
class RawAudio(Formatter):
    """Speech events as the audio bytes they carry (module docstring)."""

    media: str = "audio/wav"

    @property
    def media_type(self) -> str:
        return self.media

    def entry(self, e: Entry, *, first: bool = False) -> bytes:
        if e.kind == Kind.ERROR:
            raise AudioStreamFailed(decode_error(e.data).error.message)
        if e.kind != Kind.CHUNK or event_type(e.data) != _SPEECH_DELTA:
            return b""
        return base64.b64decode(_delta_decoder.decode(e.data).audio)

    def interrupted(self, body: ErrorBody) -> bytes:
        raise AudioStreamFailed(body.message)


def stream_events(
    state: EdgeState, opened: Opened, model: str, fmt: Formatter | None = None
) -> Response:
    """The streaming answer of ``opened``: its events as named SSE, or in ``fmt``."""
    return stream_response(
        state,
        inject(opened.entries, opened.fault, closing=state.closing, named=True),
        fmt or Formatter("sse", state.settings.retry_ms, named=True),
        stream_id=opened.sid,
        model=model,
        disconnect_after=opened.cut,
        arrived=opened.arrived,
        release=opened.release,
    )


def events_answer(
    make: Callable[[list[Any], str], Response],
) -> Callable[[AsyncGenerator[list[Entry], None], str], Any]:
    """The answer of a non-streaming request of typed events: ``make(events, sid)`` with
    every event of the stream once it has ended; its error entry as the error it holds."""

    async def answer(entries: AsyncGenerator[list[Entry], None], sid: str) -> Response:
        headers = {"X-Stream-Id": sid}
        events: list[Any] = []
        try:
            async for batch in entries:
                for e in batch:
                    if e.kind == Kind.ERROR:
                        return Response(
                            e.data,
                            status_code=error_status(e.data),
                            media_type="application/json",
                            headers=headers,
                        )
                    if e.kind == Kind.CHUNK:
                        events.append(msgspec.json.decode(e.data))
                    if e.terminal:
                        response = make(events, sid)
                        response.headers.update(headers)
                        return response
        except StreamInterrupted as e:
            return interrupted_answer(e, headers)
        finally:
            await entries.aclose()
        raise ServiceUnavailable(
            f"stream {sid} ended without its events", code="stream_incomplete", retry_after_s=1
        )

    return answer


async def create_speech(request: Request) -> Response:
    state = edge_state(request)
    state.check_open()
    req = validate(SpeechRequest, decode_body(await request.body()))
    check_content(req)
    body = req.model_dump(mode="json", exclude_none=True)
    opened = await open_stream(
        request,
        state,
        kind="speech",
        endpoint="chat",
        model=req.model,
        body=body,
        stream=True,
        seed=None,
    )
    fmt = None
    if req.stream_format != "sse":
        fmt = RawAudio("text", state.settings.retry_ms, media=media_type(speech_format(body)))
    response = stream_events(state, opened, req.model, fmt)
    response.headers.update(opened.admission.headers)
    return response


def _form_text(form: Any, name: str) -> str | None:
    value = form.get(name)
    if value is None or isinstance(value, UploadFile):
        return None
    return str(value)


def _transcript(events: list[Any], fmt: str, body: dict[str, Any]) -> Response:
    done = events[-1] if events else {}
    text, usage = done.get("text", ""), done.get("usage")
    if fmt == "text":
        return PlainTextResponse(text)
    if fmt == "verbose_json":
        seconds = body["audio_seconds"]
        segment = {"id": 0, "seek": 0, "start": 0.0, "end": seconds, "text": text}
        return JSONResponse(
            {
                "task": "transcribe",
                "language": body.get("language") or "english",
                "duration": seconds,
                "text": text,
                "segments": [segment],
                "usage": {"type": "duration", "seconds": round(seconds)},
            }
        )
    return JSONResponse({"text": text, "usage": usage})


async def _transcription_body(form: Any) -> tuple[dict[str, Any], bool]:
    """The producer's body of a transcription upload (module docstring), and its ``stream``."""
    upload = form.get("file")
    model = _form_text(form, "model")
    if not isinstance(upload, UploadFile):
        raise BadRequest("file: missing required field (the audio upload)", param="file")
    if not model:
        raise BadRequest("model: missing required field", param="model")
    fmt = _form_text(form, "response_format") or "json"
    if fmt not in _TRANSCRIPT_FORMATS:
        raise BadRequest(
            f"response_format {fmt!r} is not supported by this server; supported: "
            f"{', '.join(_TRANSCRIPT_FORMATS)}",
            param="response_format",
            code="invalid_value",
        )
    body: dict[str, Any] = {
        "model": model,
        **upload_facts(await upload.read()),
        "response_format": fmt,
    }
    for name in ("language", "prompt"):
        if (value := _form_text(form, name)) is not None:
            body[name] = value
    return body, (_form_text(form, "stream") or "false").lower() == "true"


async def create_transcription(request: Request) -> Response:
    state = edge_state(request)
    state.check_open()
    try:
        async with request.form() as form:  # closes the upload's spooled file however it ends
            body, stream = await _transcription_body(form)
    except ApiError:
        raise
    except Exception as e:  # the form parser refused the body (starlette's HTTPException)
        detail = getattr(e, "detail", e)
        raise BadRequest(f"expected a multipart/form-data upload: {detail}", param=None) from None
    model, fmt = body["model"], body["response_format"]
    opened = await open_stream(
        request,
        state,
        kind="transcription",
        endpoint="chat",
        model=model,
        body=body,
        stream=stream,
        seed=None,
    )
    if stream:
        response = stream_events(state, opened, model)
    else:
        try:
            response = await whole_response(
                request,
                state,
                opened.entries,
                opened.sid,
                model,
                events_answer(lambda events, _: _transcript(events, fmt, body)),
            )
        finally:
            opened.release()
    response.headers.update(opened.admission.headers)
    return response


routes: list[BaseRoute] = [
    Route("/v1/audio/speech", create_speech, methods=["POST"]),
    Route("/v1/audio/transcriptions", create_transcription, methods=["POST"]),
]
