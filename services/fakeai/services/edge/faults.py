"""Fault injection, for users' own tests of their clients: what goes wrong, and when.

Per request, ``X-FakeAI-Fault: <fault>``; for every generation request, a seeded random draw
from the ``FAKEAI_FAULTS`` setting (:func:`parse_fault_rates`). A fault is one of:

=====================  ==========================================================================
``status=429``         before the stream: OpenAI's 429 ``rate_limit_exceeded`` body, with
                       ``Retry-After``, ``retry-after-ms`` and the ``x-ratelimit-*`` headers
``status=500``         before the stream: OpenAI's 500 ``server_error`` body
``status=503``         before the stream: OpenAI's 503 ``server_error`` body, with ``Retry-After``
``error_after=N``      an error event after N chunks, then ``[DONE]`` (a resumable interruption)
``stall=S@N``          no byte at all (not even ``: ping``) for S seconds after N chunks, then the
                       stream goes on; ``stall=S`` is ``stall=S@0``
``cut_after=N``        the connection ends after N chunks, without ``[DONE]`` (what
                       ``X-FakeAI-Disconnect-After`` does)
``malformed_after=N``  one malformed chunk (truncated JSON) after N chunks, then the stream goes on
``none``               no fault (the header overrides the random draw)
=====================  ==========================================================================

N counts the data chunks this response has written; a stream that ends before its N-th chunk
ends normally. With N = 0 a stall starts at once, and an error, a cut or a malformed chunk
comes when the first entry is due (in its place, or before it). S is at most
``max_stall_s`` (the edge passes ``max_timing_ms``). A malformed header is a 400 naming it.

How the edge applies them (the wiring, a few lines per route):

- A :class:`StatusFault` is raised as :func:`status_error` before anything is published, so
  no stream exists and nothing counts against the key's limits.
- The mid-stream faults are applied per connection by :func:`inject`, a wrapper around the
  route's log iterator (the batches that :mod:`.responses` writes): it splits the batch that
  holds the N-th chunk and then raises :class:`~.interrupted.StreamInterrupted` (the response
  writes it as an error event, then ``[DONE]``), returns (the response ends without an end
  marker), sleeps, or puts a malformed entry before the next one. The stream itself goes on in
  Redis untouched: a client can resume after any of these with ``Last-Event-ID``.
- On a non-streaming request a mid-stream fault in the header is a 400; one drawn at random
  is dropped.

The malformed event carries the id of the chunk before it (``<ms>-<seq-1>`` of the next
entry), so a client's ``Last-Event-ID`` does not move.

On a Responses API stream (``named``: the route's :class:`.formats.Formatter` names its events)
the faults speak that API: N counts its events (``response.created`` is the first), an error
is the ``error`` event (``{"type": "error", "code": "injected_fault", ...}``, without
``sequence_number``: it is no event of the response, so ``starting_after`` the last number
received resumes), and the malformed event is a ``response.output_text.delta`` cut short. An
injected error is not ``response.failed``: the response itself goes on and can be resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import msgspec

from fakeai.errors import ApiError, BadRequest, RateLimited
from fakeai.services.edge.interrupted import RESUME_HINT, StreamInterrupted
from fakeai.services.edge.limits import ratelimit_headers
from fakeai.streams.log import Entry, Kind

__all__ = [
    "FAULT_CODE",
    "HEADER",
    "CutAfter",
    "ErrorAfter",
    "Fault",
    "FaultDice",
    "FaultRates",
    "MalformedAfter",
    "MidStreamFault",
    "StallAfter",
    "StatusFault",
    "choose_fault",
    "inject",
    "parse_fault",
    "parse_fault_rates",
    "status_error",
]

HEADER: Final = "X-FakeAI-Fault"
FAULT_CODE: Final = "injected_fault"
"""The ``code`` of an injected error event (so a test can tell it from a real one)."""


class StatusFault(msgspec.Struct, frozen=True, tag="status"):
    """Answer ``status`` before the stream, as OpenAI does."""

    status: Literal[429, 500, 503]


class ErrorAfter(msgspec.Struct, frozen=True, tag="error_after"):
    chunks: int


class StallAfter(msgspec.Struct, frozen=True, tag="stall"):
    seconds: float
    chunks: int = 0


class CutAfter(msgspec.Struct, frozen=True, tag="cut_after"):
    chunks: int


class MalformedAfter(msgspec.Struct, frozen=True, tag="malformed_after"):
    chunks: int


MidStreamFault = ErrorAfter | StallAfter | CutAfter | MalformedAfter
Fault = StatusFault | MidStreamFault
"""A tagged union (msgspec): it can ride in a wire message should a producer ever apply one."""

_STATUSES: Final[dict[int, Literal[429, 500, 503]]] = {429: 429, 500: 500, 503: 503}
_N = r"(\d{1,9})"
_S = r"(\d{1,6}(?:\.\d{1,6})?)"
_GRAMMAR: Final = (
    "status=429|500|503, error_after=N, stall=S@N, cut_after=N, malformed_after=N or none "
    "(N chunks >= 0, S seconds > 0)"
)
_PATTERNS: Final = (
    (re.compile(r"status=(\d{3})"), "status"),
    (re.compile(rf"error_after={_N}"), "error_after"),
    (re.compile(rf"stall={_S}(?:@{_N})?"), "stall"),
    (re.compile(rf"cut_after={_N}"), "cut_after"),
    (re.compile(rf"malformed_after={_N}"), "malformed_after"),
)


class FaultSyntaxError(ValueError):
    """A fault that does not parse; the message says what is accepted."""


def _parse(text: str, max_stall_s: float) -> Fault | None:
    spec = text.strip().lower().replace(" ", "")
    if spec == "none":
        return None
    for pattern, kind in _PATTERNS:
        m = pattern.fullmatch(spec)
        if m is None:
            continue
        if kind == "status":
            status = _STATUSES.get(int(m.group(1)))
            if status is None:
                raise FaultSyntaxError(f"status must be 429, 500 or 503; got {m.group(1)}")
            return StatusFault(status)
        if kind == "stall":
            seconds = float(m.group(1))
            if not 0 < seconds <= max_stall_s:
                raise FaultSyntaxError(
                    f"stall seconds must be > 0 and at most {max_stall_s:g}; got {m.group(1)}"
                )
            return StallAfter(seconds, int(m.group(2) or 0))
        n = int(m.group(1))
        if kind == "error_after":
            return ErrorAfter(n)
        if kind == "cut_after":
            return CutAfter(n)
        return MalformedAfter(n)
    raise FaultSyntaxError(f"expected one of {_GRAMMAR}")


def parse_fault(raw: str, *, max_stall_s: float) -> Fault | None:
    """The fault an ``X-FakeAI-Fault`` value asks for (None for ``none``).

    Raises:
        BadRequest: a malformed value (400 naming the header and the grammar).
    """
    try:
        return _parse(raw, max_stall_s)
    except FaultSyntaxError as e:
        raise BadRequest(
            f"{HEADER}: {e}; got {raw[:80]!r}", param=HEADER, code="invalid_fault"
        ) from None


# -- the seeded rate ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Faults drawn at random for generation requests, each with its probability."""

    rules: tuple[tuple[float, Fault], ...] = ()
    seed: int = 0


def parse_fault_rates(text: str | None, *, max_stall_s: float) -> FaultRates:
    """``FAKEAI_FAULTS``: ``seed=<int>; <p> <fault>; <p> <fault>...``, ``p`` a probability
    (``0.05``) or a percentage (``5%``); the probabilities add up to at most 1. Example:
    ``seed=7; 2% status=503; 1% stall=2@10; 0.5% cut_after=3``.

    Raises:
        ValueError: a malformed item, named, with the grammar.
    """
    if text is None or not text.strip():
        return FaultRates()
    rules: list[tuple[float, Fault]] = []
    seed = 0
    for i, raw in enumerate(text.split(";"), 1):
        item = raw.strip()
        if not item:
            continue
        where = f"FAKEAI_FAULTS item {i} ({item[:40]!r})"
        if item.lower().startswith("seed="):
            try:
                seed = int(item[5:].strip())
            except ValueError:
                raise ValueError(f"{where}: seed must be an integer") from None
            continue
        p_text, _, spec = item.partition(" ")
        p = _probability(p_text)
        if p is None:
            raise ValueError(
                f"{where}: expected '<probability> <fault>', e.g. '0.05 status=503' or "
                f"'5% stall=2@10', or 'seed=<int>'"
            )
        try:
            fault = _parse(spec, max_stall_s)
        except FaultSyntaxError as e:
            raise ValueError(f"{where}: {e}") from None
        if fault is None:
            raise ValueError(f"{where}: 'none' has no place in FAKEAI_FAULTS")
        rules.append((p, fault))
    total = math.fsum(p for p, _ in rules)
    if total > 1 + 1e-9:
        raise ValueError(f"FAKEAI_FAULTS: the probabilities add up to {total:g}, more than 1")
    return FaultRates(tuple(rules), seed)


def _probability(text: str) -> float | None:
    t = text.strip()
    scale = 1.0
    if t.endswith("%"):
        t, scale = t[:-1], 0.01
    if not re.fullmatch(r"\d{1,3}(?:\.\d{1,9})?", t):
        return None
    p = float(t) * scale
    return p if 0 <= p <= 1 else None


class FaultDice:
    """The random draw of one edge process: the same seed gives the same sequence of faults
    over its requests (each edge process draws on its own)."""

    __slots__ = ("_rng", "rates")

    def __init__(self, rates: FaultRates) -> None:
        self.rates = rates
        self._rng = random.Random(rates.seed)

    def draw(self) -> Fault | None:
        """The fault for the next request, or None (one uniform draw per request)."""
        if not self.rates.rules:
            return None
        u = self._rng.random()
        edge = 0.0
        for p, fault in self.rates.rules:
            edge += p
            if u < edge:
                return fault
        return None


def choose_fault(
    header: str | None,
    dice: FaultDice | None,
    *,
    streaming: bool,
    max_stall_s: float,
) -> Fault | None:
    """The fault of one request: its header (``none`` included) wins over the draw.

    ``dice`` is None for requests that are not generations (a resume): only the header counts.

    Raises:
        BadRequest: a malformed header, or a mid-stream fault asked of a non-streaming request.
    """
    if header is not None and header.strip():
        fault = parse_fault(header, max_stall_s=max_stall_s)
        if fault is not None and not streaming and not isinstance(fault, StatusFault):
            raise BadRequest(
                f"{HEADER}: {header.strip()!r} needs a streaming response (stream: true)",
                param=HEADER,
                code="invalid_fault",
            )
        return fault
    fault = dice.draw() if dice is not None else None
    if fault is not None and not streaming and not isinstance(fault, StatusFault):
        return None
    return fault


# -- pre-stream: a status -----------------------------------------------------------------------

# OpenAI's own texts (as its API answers them), so clients see what they will see in production.
_RATE_LIMITED = (
    "Rate limit reached for requests per min (RPM): Limit {limit}, Used {limit}, Requested 1. "
    "Please try again in {wait}. (injected by X-FakeAI-Fault)"
)
_SERVER_ERROR = (
    "The server had an error while processing your request. Sorry about that! "
    "(injected by X-FakeAI-Fault)"
)
_OVERLOADED = (
    "The engine is currently overloaded, please try again later. (injected by X-FakeAI-Fault)"
)


class InjectedRateLimit(RateLimited):
    """An injected 429, with OpenAI's ``x-ratelimit-*`` headers."""

    type = "requests"

    def __init__(self, message: str, headers: Mapping[str, str]) -> None:
        super().__init__(message, retry_after_s=1)
        self.extra_headers = dict(headers)

    def headers(self) -> dict[str, str]:
        return {**self.extra_headers, **super().headers(), "retry-after-ms": "1000"}


class InjectedServerError(ApiError):
    status = 500
    type = "server_error"
    default_code = None


class InjectedUnavailable(ApiError):
    status = 503
    type = "server_error"
    default_code = None
    retryable = True


def status_error(fault: StatusFault, ratelimit: Mapping[str, str] | None = None) -> ApiError:
    """The error to answer for ``fault``: raise it before publishing anything.

    ``ratelimit``: the key's own ``x-ratelimit-*`` headers when it has a requests limit
    (:meth:`.limits.Limiter.headers`); its remaining count is shown as 0, as a real 429 would.
    Without them the headers say a limit of 60 per minute that resets in 1 s.
    """
    if fault.status == 429:
        headers = dict(ratelimit or {})
        if "x-ratelimit-limit-requests" not in headers:
            headers.update(ratelimit_headers(60, 60, 1000))
        headers["x-ratelimit-remaining-requests"] = "0"
        message = _RATE_LIMITED.format(
            limit=headers["x-ratelimit-limit-requests"], wait=headers["x-ratelimit-reset-requests"]
        )
        return InjectedRateLimit(message, headers)
    if fault.status == 503:
        return InjectedUnavailable(_OVERLOADED, retry_after_s=1)
    return InjectedServerError(_SERVER_ERROR)


# -- mid-stream: a wrapper around the log iterator -----------------------------------------------

_MALFORMED: Final = (
    b'{"id":"malformed","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"'
)
"""A chunk cut short: valid as SSE, invalid as JSON (the client's parser must cope)."""
_MALFORMED_EVENT: Final = (
    b'{"type":"response.output_text.delta","item_id":"malformed","output_index":0,'
    b'"content_index":0,"delta":"'
)
"""The same for a Responses API stream: a text delta cut short (its type still readable)."""
_RESUME_AFTER: Final = "resume with starting_after=<the last sequence_number received>"


def _nth_data(batch: Sequence[Entry], n: int) -> int | None:
    """The index of the n-th (1-based) data entry of ``batch``, or None when it has fewer."""
    seen = 0
    for i, e in enumerate(batch):
        if e.is_data:
            seen += 1
            if seen == n:
                return i
    return None


def _malformed_before(e: Entry, named: bool) -> Entry:
    """A malformed chunk (``named``: event) to write before ``e``, with the id of the entry
    before ``e``."""
    ms = e.id.rpartition(b"-")[0]
    return Entry(
        id=ms + b"-" + str(max(0, e.seq - 1)).encode(),
        seq=max(0, e.seq - 1),
        kind=Kind.CHUNK,
        data=_MALFORMED_EVENT if named else _MALFORMED,
        t_us=e.t_us,
    )


async def _fire(fault: MidStreamFault, closing: asyncio.Event | None, named: bool) -> bool:
    """Apply ``fault`` at its point; True when the response must end there (a cut)."""
    match fault:
        case ErrorAfter(chunks=n):
            hint = _RESUME_AFTER if named else RESUME_HINT
            raise StreamInterrupted(
                FAULT_CODE, f"fault injected by {HEADER}: error_after={n}; {hint}"
            )
        case CutAfter():
            return True
        case StallAfter(seconds=s):
            if closing is None:
                await asyncio.sleep(s)
            else:  # shutdown ends the stall: the stream then ends resumably, as every other
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closing.wait(), s)
    return False


async def inject(
    entries: AsyncGenerator[list[Entry], None],
    fault: MidStreamFault | None,
    *,
    closing: asyncio.Event | None = None,
    named: bool = False,
) -> AsyncGenerator[list[Entry], None]:
    """``entries`` (batches of a log iterator) with ``fault`` applied (module docstring).

    Heartbeats (empty batches) pass through, except during a stall, when nothing is read.
    Closing the result closes ``entries`` (the hub subscription is released). ``closing``
    (``EdgeState.closing``) cuts a stall short at shutdown. ``named``: a Responses API
    stream (its faults in that API's shapes).
    """
    try:
        if fault is None:
            async for batch in entries:
                yield batch
            return
        left = fault.chunks
        armed = True
        malformed_due = False
        if left == 0 and isinstance(fault, StallAfter | MalformedAfter):
            armed = False
            await _fire(fault, closing, named)  # a stall before anything is read
            malformed_due = isinstance(fault, MalformedAfter)
        async for batch in entries:
            if malformed_due and batch:
                batch = [_malformed_before(batch[0], named), *batch]
                malformed_due = False
            if not armed or not batch:
                yield batch
                continue
            if left == 0:
                # An error or a cut before the first entry fires when it arrives: the log
                # iterator has started by then, so closing it releases its subscription.
                armed = False
                if await _fire(fault, closing, named):
                    return
                yield batch
                continue
            i = _nth_data(batch, left)
            if i is None:
                left -= sum(1 for e in batch if e.is_data)
                yield batch
                continue
            armed = False
            yield batch[: i + 1]
            if await _fire(fault, closing, named):
                return
            rest = batch[i + 1 :]
            if isinstance(fault, MalformedAfter):
                if rest:
                    rest = [_malformed_before(rest[0], named), *rest]
                else:
                    malformed_due = True
            if rest:
                yield rest
    finally:
        await entries.aclose()
