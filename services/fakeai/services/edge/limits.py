"""Per-key limits: requests per minute and concurrent streams, shared by every edge process.

The counts live in Redis, so N edges enforce one limit per key (DESIGN.md, "Tenants and
limits"). Per request, one non-transactional pipeline to one node (both keys carry the
tenant's hash tag, so they sit in one slot)::

    INCR      <p>:limits:{k:<tenant>}:rpm:<minute>      requests in this fixed window
    PEXPIRE   <same>  <until the window ends + 60 s>    the counter goes with its window
    ZREMRANGEBYSCORE <p>:limits:{k:<tenant>}:streams -inf <now>   drop lapsed entries
    ZADD      <same>  <lapse ms> <stream id>            this request's stream, provisionally
    ZCARD     <same>                                    streams running, this one included
    PEXPIRE   <same>  <stream ttl>                      an idle key's set goes away

then :func:`decide`, a pure function, says yes or no. A refused request removes its stream id
again (``ZREM``: a second round trip only on refusal).

Why no over-admission without MULTI: each request's ``ZCARD`` runs after its own ``ZADD`` on
the same key (one connection, in order), so of any ``max + 1`` requests admitted at once the
last to count would have counted all of them. Races can only refuse too many (two requests
that see each other both back off), never admit too many.

A stream leaves the set when it finishes. The edge need not see its end (the client may be
gone; a disconnect is not a cancel): when a count is over the limit, :meth:`Limiter.admit`
looks at the members' meta hashes and drops the finished ones (``status`` in
``FINAL_STATUSES``) before deciding: only at the limit, at most one more round trip. A stream
whose meta hash is missing stays until its score (creation + ``max_stream_s`` + a margin)
lapses: it may be a request whose meta is not written yet. :meth:`Limiter.release` drops a
stream at once (the edge when it sees the terminal entry, or a producer).

Every refused request still counts in the requests window (``INCR`` comes first), as a
client that keeps hammering is still making requests; the window resets on the minute.

Headers (OpenAI's, https://platform.openai.com/docs/guides/rate-limits#rate-limits-in-headers)
on every response of a key with a requests limit: ``x-ratelimit-limit-requests``,
``x-ratelimit-remaining-requests``, ``x-ratelimit-reset-requests`` (a Go-style duration,
``1s``, ``6m0s``, ``17.28s``, ``120ms``); with a streams limit also ``x-fakeai-limit-streams``
and ``x-fakeai-remaining-streams`` (ours). Beyond a limit: 429 ``rate_limit_exceeded``
with ``Retry-After`` (whole seconds, rounded up) and ``retry-after-ms`` (the openai SDK reads
it first).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from fakeai.config import Settings
from fakeai.errors import RateLimited
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient
from fakeai.streams.meta import FINAL_STATUSES, F

__all__ = [
    "ALLOW",
    "WINDOW_MS",
    "Counts",
    "Decision",
    "KeyLimits",
    "KeyRateLimited",
    "Limiter",
    "decide",
    "format_duration",
    "limit_headers",
    "ratelimit_headers",
    "window_of",
]

WINDOW_MS: Final = 60_000
"""The requests window: one minute, aligned on the Unix minute (every edge agrees)."""
_WINDOW_GRACE_MS = 60_000
"""A window's counter outlives its window by this much (clock skew between edges)."""
_STREAM_MARGIN_S = 60.0
"""A stream's entry lapses this long after ``max_stream_s`` (time spent queued)."""


# -- pure decisions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """The limits every key gets; 0 means none."""

    requests_per_min: int = 0
    max_streams: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyLimits:
        return cls(settings.key_requests_per_min, settings.key_max_streams)

    @property
    def enabled(self) -> bool:
        return bool(self.requests_per_min or self.max_streams)


def window_of(now_ms: int) -> tuple[int, int]:
    """``(window, ms until it resets)`` of the fixed one-minute window holding ``now_ms``."""
    window, into = divmod(now_ms, WINDOW_MS)
    return window, WINDOW_MS - into


def format_duration(ms: float) -> str:
    """A duration as OpenAI writes ``x-ratelimit-reset-*`` (Go's ``time.Duration.String``):
    ``120ms``, ``1s``, ``17.28s``, ``6m0s``, ``1h0m0s``; never negative."""
    total = max(0, math.ceil(ms))
    if total == 0:
        return "0s"
    if total < 1000:
        return f"{total}ms"
    hours, rest = divmod(total, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    sec = str(seconds) if not millis else f"{seconds}.{millis:03d}".rstrip("0")
    if hours:
        return f"{hours}h{minutes}m{sec}s"
    if minutes:
        return f"{minutes}m{sec}s"
    return f"{sec}s"


def ratelimit_headers(limit: int, used: int, reset_ms: int) -> dict[str, str]:
    """OpenAI's request-limit headers for a key that has made ``used`` requests of ``limit``
    in a window that resets in ``reset_ms``."""
    return {
        "x-ratelimit-limit-requests": str(limit),
        "x-ratelimit-remaining-requests": str(max(0, limit - used)),
        "x-ratelimit-reset-requests": format_duration(reset_ms),
    }


@dataclass(frozen=True, slots=True)
class Counts:
    """What Redis answered for one request."""

    requests: int | None
    """Requests of the key in this window, this one included (None: no requests limit)."""
    streams: int | None
    """Unfinished streams of the key, this one included (None: no streams limit)."""
    reset_ms: int
    """Until the requests window resets."""


class KeyRateLimited(RateLimited):
    """429 for a key beyond one of its limits, with OpenAI's body and headers.

    OpenAI answers ``"type": "requests"`` (or ``"tokens"``) and code ``rate_limit_exceeded``;
    the ``x-ratelimit-*`` headers go with it, as on every response of a limited key.
    """

    type = "requests"

    def __init__(
        self, message: str, *, retry_after_ms: int, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message, retry_after_s=math.ceil(max(retry_after_ms, 1) / 1000))
        self.retry_after_ms = max(retry_after_ms, 1)
        self.extra_headers = dict(headers or {})

    def headers(self) -> dict[str, str]:
        return {
            **self.extra_headers,
            **super().headers(),
            "retry-after-ms": str(self.retry_after_ms),
        }


Reason = Literal["requests", "streams"]


@dataclass(frozen=True, slots=True)
class Decision:
    """Admit or refuse one request; ``headers`` go on its response either way."""

    allowed: bool
    headers: dict[str, str] = field(default_factory=dict)
    reason: Reason | None = None
    error: KeyRateLimited | None = None

    def raise_if_refused(self) -> None:
        if self.error is not None:
            raise self.error


ALLOW: Final = Decision(True)
"""The decision for a key without limits: no headers."""


def limit_headers(limits: KeyLimits, counts: Counts) -> dict[str, str]:
    """The headers of a response of a key with ``limits`` and ``counts``."""
    headers: dict[str, str] = {}
    if limits.requests_per_min and counts.requests is not None:
        headers.update(ratelimit_headers(limits.requests_per_min, counts.requests, counts.reset_ms))
    if limits.max_streams and counts.streams is not None:
        headers["x-fakeai-limit-streams"] = str(limits.max_streams)
        headers["x-fakeai-remaining-streams"] = str(max(0, limits.max_streams - counts.streams))
    return headers


def decide(limits: KeyLimits, tenant: str, counts: Counts) -> Decision:
    """Admit the request behind ``counts``, or refuse it with a 429 (requests checked first)."""
    if not limits.enabled:
        return ALLOW
    headers = limit_headers(limits, counts)
    rpm = limits.requests_per_min
    if rpm and counts.requests is not None and counts.requests > rpm:
        wait = format_duration(counts.reset_ms)
        error = KeyRateLimited(
            f"Rate limit reached for requests per min (RPM) on key {tenant!r}: Limit {rpm}, "
            f"Used {rpm}, Requested 1. Please try again in {wait}.",
            retry_after_ms=counts.reset_ms,
            headers=headers,
        )
        return Decision(False, headers, "requests", error)
    most = limits.max_streams
    if most and counts.streams is not None and counts.streams > most:
        error = KeyRateLimited(
            f"Too many concurrent streams on key {tenant!r}: Limit {most}, Running "
            f"{counts.streams - 1}, Requested 1. Retry when one has finished (or cancel one).",
            retry_after_ms=1000,
            headers=headers,
        )
        return Decision(False, headers, "streams", error)
    return Decision(True, headers)


# -- Redis ---------------------------------------------------------------------------------------


class Limiter:
    """The per-key limits of one edge process, counted in Redis (module docstring).

    Stateless apart from its settings: every edge process builds its own, and they agree
    through Redis. The Redis client is passed per call (the edge attaches one only once Redis
    answers).
    """

    def __init__(self, keys: Keys, limits: KeyLimits, *, stream_ttl_s: float) -> None:
        self.keys = keys
        self.limits = limits
        self.stream_ttl_ms = max(1, math.ceil(stream_ttl_s * 1000))

    @classmethod
    def from_settings(cls, keys: Keys, settings: Settings) -> Limiter:
        return cls(
            keys,
            KeyLimits.from_settings(settings),
            stream_ttl_s=settings.max_stream_s + _STREAM_MARGIN_S,
        )

    @property
    def enabled(self) -> bool:
        return self.limits.enabled

    async def admit(
        self, redis: RedisClient, tenant: str, stream_id: str, *, now_ms: int | None = None
    ) -> Decision:
        """Count one request of ``tenant`` that would start ``stream_id``; admit or refuse.

        An admitted stream stays counted until it finishes (or :meth:`release`); a refused
        one is removed again. Redis errors propagate (the edge answers 503).
        """
        limits = self.limits
        if not limits.enabled:
            return ALLOW
        now = int(time.time() * 1000) if now_ms is None else now_ms
        window, reset_ms = window_of(now)
        rk = self.keys.limit_requests(tenant, window)
        sk = self.keys.limit_streams(tenant)
        pipe = redis.pipeline(transaction=False)  # one slot: the tenant's tag
        if limits.requests_per_min:
            pipe.incr(rk)
            # Relative, not PEXPIREAT: an edge whose clock is off must not delete the count.
            pipe.pexpire(rk, reset_ms + _WINDOW_GRACE_MS)
        if limits.max_streams:
            pipe.zremrangebyscore(sk, "-inf", now)
            pipe.zadd(sk, {stream_id: now + self.stream_ttl_ms})
            pipe.zcard(sk)
            pipe.pexpire(sk, self.stream_ttl_ms)
        replies: list[Any] = await pipe.execute()
        requests = int(replies[0]) if limits.requests_per_min else None
        streams = int(replies[-2]) if limits.max_streams else None
        if (
            streams is not None
            and streams > limits.max_streams
            and (requests is None or requests <= limits.requests_per_min)
        ):
            streams = await self._drop_finished(redis, sk, stream_id, streams)
        decision = decide(limits, tenant, Counts(requests, streams, reset_ms))
        if not decision.allowed and limits.max_streams:
            await redis.zrem(sk, stream_id)
        return decision

    async def _drop_finished(
        self, redis: RedisClient, sk: str, stream_id: str, counted: int
    ) -> int:
        """Drop the members whose stream has finished; the count after that."""
        members: list[Any] = await redis.zrange(sk, 0, -1)
        others = [m for m in members if m.decode() != stream_id]
        if not others:
            return counted
        pipe = redis.pipeline(transaction=False)  # meta hashes: one slot per stream bucket
        for m in others:
            pipe.hget(self.keys.meta(m.decode()), F.STATUS)
        statuses: list[bytes | None] = await pipe.execute()
        done = [
            m
            for m, s in zip(others, statuses, strict=True)
            if s is not None and s.decode(errors="replace") in FINAL_STATUSES
        ]
        if not done:
            return counted
        pipe = redis.pipeline(transaction=False)
        pipe.zrem(sk, *done)
        pipe.zcard(sk)
        _, count = await pipe.execute()
        return int(count)

    async def release(self, redis: RedisClient, tenant: str, stream_id: str) -> None:
        """``stream_id`` has finished: it no longer counts against ``tenant``."""
        if self.limits.max_streams:
            await redis.zrem(self.keys.limit_streams(tenant), stream_id)

    async def headers(
        self, redis: RedisClient, tenant: str, *, now_ms: int | None = None
    ) -> dict[str, str]:
        """The headers for a response of ``tenant`` that does not count as a request (a
        resume, a list, an info): the counts as they are, nothing added."""
        limits = self.limits
        if not limits.enabled:
            return {}
        now = int(time.time() * 1000) if now_ms is None else now_ms
        window, reset_ms = window_of(now)
        pipe = redis.pipeline(transaction=False)
        if limits.requests_per_min:
            pipe.get(self.keys.limit_requests(tenant, window))
        if limits.max_streams:
            pipe.zcount(self.keys.limit_streams(tenant), f"({now}", "+inf")
        replies: list[Any] = await pipe.execute()
        requests = int(replies[0] or 0) if limits.requests_per_min else None
        streams = int(replies[-1]) if limits.max_streams else None
        return limit_headers(limits, Counts(requests, streams, reset_ms))
