"""Request bodies of the audio and image endpoints, validated at the HTTP boundary (pydantic).

Fields follow the OpenAI API reference (audio/createSpeech, audio/createTranscription,
images/create); as for chat, types are strict and unknown fields are kept. The values the
content builders decide on (formats, sizes: :mod:`fakeai.content.speech`,
:mod:`fakeai.content.images`) are checked here too, by the same functions, so a bad value is a
400 before the stream exists rather than an error event after it started.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from fakeai.content import InvalidRequestValue
from fakeai.content.images import MAX_IMAGES, MAX_PARTIAL_IMAGES, image_options
from fakeai.content.speech import MAX_SPEED, MIN_SPEED, speech_format
from fakeai.errors import BadRequest
from fakeai.services.edge.schemas import RequestModel

__all__ = ["ImageRequest", "SpeechRequest", "check_content"]

MAX_SPEECH_INPUT = 4096
"""Characters of ``input`` OpenAI accepts."""


class SpeechRequest(RequestModel):
    model: str = Field(min_length=1)
    input: str = Field(min_length=1, max_length=MAX_SPEECH_INPUT)
    voice: str | dict[str, Any]
    instructions: str | None = None
    response_format: str | None = None
    speed: float | None = Field(None, ge=MIN_SPEED, le=MAX_SPEED)
    stream_format: Literal["audio", "sse"] | None = None


class ImageRequest(RequestModel):
    model: str = Field("gpt-image-1", min_length=1)
    prompt: str = Field(min_length=1, max_length=32_000)
    n: int | None = Field(None, ge=1, le=MAX_IMAGES)
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    output_format: str | None = None
    response_format: Literal["b64_json"] | None = None
    stream: bool = False
    partial_images: int | None = Field(None, ge=0, le=MAX_PARTIAL_IMAGES)


def check_content(req: SpeechRequest | ImageRequest) -> None:
    """The values the content builders refuse, as a 400 naming the field."""
    try:
        if isinstance(req, SpeechRequest):
            speech_format(req.model_dump())
        else:
            image_options(req.model_dump())
    except InvalidRequestValue as e:
        raise BadRequest(str(e), param=e.param, code="invalid_value") from None
