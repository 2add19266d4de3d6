"""A built response and its events: what every event-stream builder of :mod:`fakeai.content`
hands the producer.

The Responses API (:mod:`.responses_api`), speech, transcription and image builders all build
their whole answer at once, as a list of events, each with the output tokens it stands for;
the producer puts each event on an absolute deadline by those counts
(:mod:`fakeai.services.producer.response_events`). This module holds that shape alone, so the
builders can use each other's parts without importing each other in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["BuiltResponse", "EventLog"]


@dataclass(frozen=True, slots=True)
class BuiltResponse:
    """A whole response and its events (each with ``sequence_number`` = its index, for the
    Responses API)."""

    response: dict[str, Any]
    """The final object: status ``completed`` or ``incomplete``, with output and usage."""
    events: list[dict[str, Any]]
    tokens: list[int]
    """Output tokens each event stands for (the builder's module docstring)."""


@dataclass(slots=True)
class EventLog:
    """Appends Responses API events with their ``sequence_number`` and token counts."""

    events: list[dict[str, Any]] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)

    def add(self, type_: str, tokens: int = 0, **fields: Any) -> None:
        self.events.append({"type": type_, **fields, "sequence_number": len(self.events)})
        self.tokens.append(tokens)
