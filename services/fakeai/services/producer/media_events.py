"""Speech, transcription and image streams: their events, paced, one log entry each.

A stream of one of these families (:func:`fakeai.streams.positions.family_of`: ``speech_…``,
``trsc_…``, ``img_…``) reaches the producer as a generation request whose body is the
validated OpenAI request (a transcription's: the facts of its upload, not the audio);
:meth:`.runner.StreamRun.run` hands it here after the checks every stream gets.

As for a Responses API stream (:mod:`.response_events`, whose pacing this reuses): the events
are built at once by :mod:`fakeai.content` (:func:`~fakeai.content.speech.build_speech`,
:func:`~fakeai.content.transcription.build_transcription`,
:func:`~fakeai.content.images.build_images`), each with the output tokens it stands for; one
timing plan (the model's latency profile, or the request's timing headers) puts each on an
absolute deadline; event k is entry ``seq`` k + 1, encoded once. A stream taken over after a
failover builds the same events again (they derive from the request and its stream id) and
skips those the log holds. The end: ``d`` after the last event, ``e`` when it stops early.

Binary payloads (audio, PNG) travel base64-encoded once, inside the event JSON, as the
OpenAI events carry them; the edge decodes them where the answer is raw bytes.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from fakeai.content.images import build_images
from fakeai.content.responses_api import BuiltResponse
from fakeai.content.speech import build_speech
from fakeai.content.transcription import build_transcription
from fakeai.services.producer.records import Outcome
from fakeai.services.producer.response_events import stream_built
from fakeai.wire import GenerationRequest

if TYPE_CHECKING:
    from fakeai.services.producer.runner import StreamRun

__all__ = ["MEDIA_FAMILIES", "stream_media"]

logger = logging.getLogger(__name__)

_BUILDERS: dict[str, Callable[[GenerationRequest], BuiltResponse]] = {
    "speech": lambda req: build_speech(req.body),
    "transcription": lambda req: build_transcription(req.body, stream_id=req.stream_id),
    "image": lambda req: build_images(
        req.body, image_id=req.stream_id, created=req.created_ms // 1000, seed=req.seed
    ),
}
MEDIA_FAMILIES = frozenset(_BUILDERS)


async def stream_media(run: StreamRun, skip: int, family: str) -> str:
    """Produce the events of a ``family`` stream after entry ``skip``, then its end (module
    docstring); returns the stream's final status."""
    req = run.request

    def make() -> BuiltResponse:
        return _BUILDERS[family](req)

    # An image costs ~50 ms of PNG encoding: off the loop.
    build = functools.partial(run.build, make, heavy=family == "image")
    return await stream_built(run, skip, build, family, _completed)


def _completed(built: BuiltResponse, tokens: int, prompt: int) -> Outcome:
    return Outcome(finish_reason="stop", completion_tokens=tokens, prompt_tokens=prompt)
