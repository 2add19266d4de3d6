"""``POST /v1/images/generations``: PNGs, streamed as partial images, through the stream log.

The request becomes a stream (``img_…``) through :func:`.publish.open_stream`, as chat does;
the producer writes each event (:mod:`fakeai.content.images`: ``image_generation.
partial_image`` x ``partial_images``, then ``image_generation.completed``, per image) as one
log entry, paced on the model's profile. ``stream: true`` answers the events as named SSE;
otherwise the JSON answer (``created``, ``data: [{"b64_json"}]``, ``usage``, and the options
used) once the last image is complete. Only ``b64_json`` is served (no URLs: there is no file
host), only ``png``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from fakeai.services.edge.audio import events_answer, stream_events
from fakeai.services.edge.media_schemas import ImageRequest, check_content
from fakeai.services.edge.openai_routes import whole_response
from fakeai.services.edge.publish import decode_body, open_stream
from fakeai.services.edge.schemas import validate
from fakeai.services.edge.state import edge_state

__all__ = ["routes"]

_COMPLETED = "image_generation.completed"
_OPTIONS = ("size", "quality", "background", "output_format")


def _images(events: list[Any], sid: str) -> Response:
    done = [e for e in events if e.get("type") == _COMPLETED]
    last = done[-1] if done else {}
    return JSONResponse(
        {
            "created": last.get("created_at"),
            "data": [{"b64_json": e["b64_json"]} for e in done],
            "usage": last.get("usage"),
            **{k: last.get(k) for k in _OPTIONS},
        }
    )


async def create_image(request: Request) -> Response:
    state = edge_state(request)
    state.check_open()
    req = validate(ImageRequest, decode_body(await request.body()))
    check_content(req)
    opened = await open_stream(
        request,
        state,
        kind="image",
        endpoint="chat",
        model=req.model,
        body=req.model_dump(mode="json", exclude_none=True),
        stream=req.stream,
        seed=None,
    )
    if req.stream:
        response = stream_events(state, opened, req.model)
    else:
        try:
            response = await whole_response(
                request, state, opened.entries, opened.sid, req.model, events_answer(_images)
            )
        finally:
            opened.release()
    response.headers.update(opened.admission.headers)
    return response


routes: list[BaseRoute] = [Route("/v1/images/generations", create_image, methods=["POST"])]
