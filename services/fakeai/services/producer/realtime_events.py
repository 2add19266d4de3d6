"""A Realtime API response stream (``rtresp_…``): the library's realtime generator, relabelled.

The edge turns each ``response.create`` of a realtime session into a chat-shaped generation
request (the conversation as ``messages``, ``modalities`` ``["audio"]`` or ``["text"]``, the
session's voice in ``audio``, ``max_tokens``; :mod:`fakeai.services.edge.realtime_session`),
and :class:`.runner.StreamRun` streams it as it streams chat, with
``StreamType.REALTIME`` (:class:`fakeai.streaming.generators.realtime.
RealtimeStreamingGenerator`): the same pacing, cancel, time limit and failover skip.

What this module adds, per event (:class:`Relabel`), before it is encoded once:

- ``event_id`` = ``event_<entry id>`` (:func:`fakeai.streams.positions.event_id`): an event
  names its place in the log, so a client that lost its connection resumes after it;
- the response id (``response.id``, every ``response_id``) = the stream id, so the client
  knows which stream to resume; ``conversation_id`` = the session's conversation.

A response cancelled (``response.cancel``) mid-way ends, as OpenAI's does, with a
``response.done`` whose status is ``cancelled`` (:func:`cancelled_done`), written before the
stream's terminal entry.
"""

from __future__ import annotations

from typing import Any

from fakeai.content.audio import wants_audio
from fakeai.streams.positions import event_id
from fakeai.wire import GenerationRequest

__all__ = ["Relabel", "cancelled_done", "modality"]


def modality(body: dict[str, Any]) -> str:
    """``audio`` or ``text``: what the response is made of."""
    return "audio" if wants_audio(body) else "text"


class Relabel:
    """Rewrites the ids of the events of one realtime response (module docstring)."""

    __slots__ = ("conversation_id", "created_ms", "sid")

    def __init__(self, request: GenerationRequest) -> None:
        self.sid = request.stream_id
        self.created_ms = request.created_ms
        realtime = request.body.get("realtime")
        conversation = realtime.get("conversation_id") if isinstance(realtime, dict) else None
        self.conversation_id = conversation if isinstance(conversation, str) else None

    def __call__(self, event: dict[str, Any], seq: int) -> dict[str, Any]:
        event["event_id"] = event_id(self.created_ms, seq)
        if "response_id" in event:
            event["response_id"] = self.sid
        response = event.get("response")
        if isinstance(response, dict):
            response["id"] = self.sid
            response["conversation_id"] = self.conversation_id
        return event


def cancelled_done(relabel: Relabel, seq: int, output_tokens: int, modality: str) -> dict[str, Any]:
    """The ``response.done`` of a response cancelled after ``output_tokens`` tokens, as event
    ``seq``."""
    return relabel(
        {
            "type": "response.done",
            "event_id": "",
            "response": {
                "object": "realtime.response",
                "id": relabel.sid,
                "status": "cancelled",
                "status_details": {"type": "cancelled", "reason": "client_cancelled"},
                "output": [],
                "conversation_id": relabel.conversation_id,
                "output_modalities": [modality],
                "max_output_tokens": "inf",
                "usage": {
                    "total_tokens": output_tokens,
                    "input_tokens": 0,
                    "output_tokens": output_tokens,
                },
                "metadata": None,
            },
        },
        seq,
    )
