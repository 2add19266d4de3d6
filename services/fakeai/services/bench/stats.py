"""What one bench run measured, and the pure arithmetic on it: percentiles, id checks, totals.

Definitions (the same as ``perfkit/sse_load.py`` and AIPerf, see ``notes/llm-sim-anchors.md`` §5):

- chunk: an SSE data event other than ``[DONE]`` (role, content, finish and usage chunks);
- TTFT: request sent -> first event with non-empty content, as the client receives it;
- ITL: the gap between consecutive content events of one stream on one connection (the gap
  across a resume is the resume latency, reported on its own);
- end-to-end: request sent -> ``[DONE]``;
- resume latency: reconnect request sent -> first resumed data event.

Throughput counts only requests that succeeded: a failed request adds to ``errors`` and to
nothing else.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fakeai.streams.positions import EntryId, parse_entry_id

__all__ = [
    "ERROR_KINDS",
    "IdCheck",
    "Outcome",
    "Totals",
    "percentile",
    "summarize",
]

ERROR_KINDS: dict[str, str] = {
    "connect": "could not connect",
    "http_status": "non-200 HTTP status",
    "not_streaming": "200 but not text/event-stream",
    "stream_error": "error frame in the stream",
    "no_done": "stream ended without [DONE]",
    "timeout": "request exceeded --timeout",
    "resume_unsupported": "no X-Stream-Id to resume with",
    "integrity": "gap, duplicate or text mismatch after resume",
    "other": "any other failure",
}
"""Every error kind a request can end with, and what it means."""


def percentile(ordered: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) of an ascending list; q in [0, 100]."""
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(values: list[float], scale: float = 1000.0) -> dict[str, float | int | None]:
    """count, mean, p50, p90, p99, max (seconds scaled to ms by default); None when empty."""
    if not values:
        return {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "mean": round(scale * math.fsum(ordered) / len(ordered), 3),
        "p50": round(scale * percentile(ordered, 50), 3),
        "p90": round(scale * percentile(ordered, 90), 3),
        "p99": round(scale * percentile(ordered, 99), 3),
        "max": round(scale * ordered[-1], 3),
    }


@dataclass(slots=True)
class IdCheck:
    """Checks the ``id:`` of every event of one stream, across all its connections.

    Ids must strictly increase. When they have the project's ``<ms>-<seq>`` form (seq counts
    entries from 1, terminal entry included), a jump in ``seq`` is a gap of that many entries.
    Ids of another form are only checked for repeats. A Responses API stream is checked by its
    events' ``sequence_number`` instead (:meth:`see_sequence`).
    """

    last: EntryId | None = None
    seen: set[bytes] = field(default_factory=set)
    ids: list[bytes] = field(default_factory=list)
    gaps: int = 0
    duplicates: int = 0

    def see(self, raw: bytes) -> None:
        parsed = parse_entry_id(raw)
        if parsed is None:
            if raw in self.seen:
                self.duplicates += 1
            else:
                self.seen.add(raw)
                self.ids.append(raw)
            return
        self._next(parsed, raw)

    def see_sequence(self, number: int) -> None:
        """A Responses API event's ``sequence_number`` (from 0, one per event): checked as the
        entry seq ``number + 1`` of one stream; recorded in :attr:`ids` as its digits."""
        self._next(EntryId(0, number + 1), b"%d" % number)

    def _next(self, parsed: EntryId, raw: bytes) -> None:
        last = self.last
        if last is not None and parsed <= last:
            self.duplicates += 1
            return
        if last is None:
            missing = parsed.seq - 1
        elif parsed.ms == last.ms:
            missing = parsed.seq - last.seq - 1
        else:
            missing = 0
        self.gaps += max(0, missing)
        self.last = parsed
        self.ids.append(raw)


@dataclass(slots=True)
class Outcome:
    """One request, from the first byte sent to the end of its last connection."""

    ok: bool = False
    error: str | None = None
    status: int | None = None
    detail: str = ""
    chunks: int = 0
    tokens: int = 0
    ttft: float | None = None
    e2e: float | None = None
    headers: float | None = None
    """Request sent -> response headers received (the server accepted the request)."""
    itl: list[float] = field(default_factory=list)
    resume_latency: list[float] = field(default_factory=list)
    gaps: int = 0
    duplicates: int = 0
    text_mismatch: bool = False
    in_flight: int = 0
    """Requests of this run in flight when this one was sent, itself included: the load it met."""

    def fail(self, kind: str, detail: str = "", status: int | None = None) -> Outcome:
        assert kind in ERROR_KINDS, kind
        self.ok = False
        self.error = kind
        self.detail = detail
        self.status = status
        return self


@dataclass(slots=True)
class Totals:
    """Everything measured over a run; :meth:`result` turns it into the report object."""

    requests_ok: int = 0
    chunks_ok: int = 0
    chunks_seen: int = 0
    tokens_ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    samples: dict[str, str] = field(default_factory=dict)
    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    headers: list[float] = field(default_factory=list)
    resume_latency: list[float] = field(default_factory=list)
    resumes: int = 0
    gaps: int = 0
    duplicates: int = 0
    text_mismatches: int = 0
    in_flight: Counter[int] = field(default_factory=Counter)
    """Successful requests by the number in flight when each was sent."""

    @property
    def finished(self) -> int:
        return self.requests_ok + sum(self.errors.values())

    def add(self, o: Outcome) -> None:
        self.chunks_seen += o.chunks
        self.resumes += len(o.resume_latency)
        self.resume_latency.extend(o.resume_latency)
        self.gaps += o.gaps
        self.duplicates += o.duplicates
        self.text_mismatches += int(o.text_mismatch)
        if not o.ok:
            kind = o.error or "other"
            self.errors[kind] += 1
            if o.status is not None:
                self.statuses[o.status] += 1
            self.samples.setdefault(kind, o.detail[:300])
            return
        self.requests_ok += 1
        self.in_flight[o.in_flight] += 1
        self.chunks_ok += o.chunks
        self.tokens_ok += o.tokens
        if o.ttft is not None:
            self.ttft.append(o.ttft)
        if o.e2e is not None:
            self.e2e.append(o.e2e)
        if o.headers is not None:
            self.headers.append(o.headers)
        self.itl.extend(o.itl)

    def result(self, *, wall_s: float, cpu_s: float, config: dict[str, Any]) -> dict[str, Any]:
        """The run's figures as one JSON-able object (the ``--json`` line)."""
        wall = max(wall_s, 1e-9)
        out: dict[str, Any] = {
            **config,
            "wall_s": round(wall_s, 3),
            "requests": self.finished,
            "requests_ok": self.requests_ok,
            "errors": sum(self.errors.values()),
            "errors_by_kind": dict(sorted(self.errors.items())),
            "http_statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "error_samples": dict(sorted(self.samples.items())),
            "requests_per_s": round(self.requests_ok / wall, 2),
            "chunks": self.chunks_ok,
            "chunks_per_s": round(self.chunks_ok / wall, 1),
            "output_tokens": self.tokens_ok,
            "output_tokens_per_s": round(self.tokens_ok / wall, 1),
            "chunks_per_request": round(self.chunks_ok / self.requests_ok, 2)
            if self.requests_ok
            else None,
            "ttft_ms": summarize(self.ttft),
            "itl_ms": summarize(self.itl),
            "e2e_ms": summarize(self.e2e),
            "headers_ms": summarize(self.headers),
            "client_cpu_s": round(cpu_s, 3),
            "client_cpu_util": round(cpu_s / wall, 3),
            "client_cpu_us_per_chunk": round(1e6 * cpu_s / self.chunks_seen, 2)
            if self.chunks_seen
            else None,
            "in_flight_at_send": [[k, v] for k, v in sorted(self.in_flight.items())],
        }
        if config.get("resume_every"):
            out["resume"] = {
                "resumes": self.resumes,
                "latency_ms": summarize(self.resume_latency),
                "gaps": self.gaps,
                "duplicates": self.duplicates,
                "text_mismatches": self.text_mismatches,
            }
        return out
