"""The audio, realtime and image endpoints, as the edge app and its OpenAPI document take them.

- ``/v1/realtime`` (WebSocket): :mod:`.realtime`;
- ``POST /v1/audio/speech``, ``POST /v1/audio/transcriptions``: :mod:`.audio`;
- ``POST /v1/images/generations``: :mod:`.images`.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from fakeai.services.edge import audio, images, realtime
from fakeai.services.edge.media_openapi import OPENAPI_PATHS, OPENAPI_SCHEMAS

__all__ = ["OPENAPI_PATHS", "OPENAPI_SCHEMAS", "routes"]

routes: list[BaseRoute] = [*realtime.routes, *audio.routes, *images.routes]
