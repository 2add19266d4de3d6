"""Per-key limits: the pure decisions (tables), then the counts on a real Redis and cluster."""

from __future__ import annotations

import asyncio

import pytest
from redis.cluster import key_slot
from tests.conftest import BOTH

from fakeai.config import Settings
from fakeai.errors import RateLimited
from fakeai.services.edge.limits import (
    ALLOW,
    WINDOW_MS,
    Counts,
    KeyLimits,
    KeyRateLimited,
    Limiter,
    decide,
    format_duration,
    ratelimit_headers,
    window_of,
)
from fakeai.streams import Keys, new_stream_id
from fakeai.streams.client import RedisClient
from fakeai.streams.meta import F

NOW = 1_699_999_992_345  # 12.345 s into its minute


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"),
        (-5, "0s"),
        (0.2, "1ms"),
        (1, "1ms"),
        (120, "120ms"),
        (999, "999ms"),
        (1000, "1s"),
        (1500, "1.5s"),
        (17_280, "17.28s"),
        (59_999, "59.999s"),
        (60_000, "1m0s"),
        (360_000, "6m0s"),
        (361_500, "6m1.5s"),
        (3_600_000, "1h0m0s"),
        (3_723_004, "1h2m3.004s"),
    ],
)
def test_format_duration_as_openai_writes_it(ms: float, text: str) -> None:
    assert format_duration(ms) == text


@pytest.mark.parametrize(
    ("now", "window", "reset"),
    [
        (0, 0, 60_000),
        (59_999, 0, 1),
        (60_000, 1, 60_000),
        (NOW, NOW // 60_000, 60_000 - 12_345),
    ],
)
def test_window_of(now: int, window: int, reset: int) -> None:
    assert window_of(now) == (window, reset)


def test_ratelimit_headers() -> None:
    assert ratelimit_headers(60, 45, 17_280) == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "15",
        "x-ratelimit-reset-requests": "17.28s",
    }
    assert ratelimit_headers(60, 99, 100)["x-ratelimit-remaining-requests"] == "0"


RPM3 = KeyLimits(requests_per_min=3)
STREAMS2 = KeyLimits(max_streams=2)
BOTH_LIMITS = KeyLimits(requests_per_min=3, max_streams=2)


@pytest.mark.parametrize(
    ("limits", "requests", "streams", "allowed", "reason", "remaining"),
    [
        (KeyLimits(), None, None, True, None, None),
        (RPM3, 1, None, True, None, "2"),
        (RPM3, 3, None, True, None, "0"),  # the 3rd of 3 is allowed
        (RPM3, 4, None, False, "requests", "0"),
        (STREAMS2, None, 2, True, None, None),
        (STREAMS2, None, 3, False, "streams", None),
        (BOTH_LIMITS, 4, 3, False, "requests", "0"),  # requests are checked first
        (BOTH_LIMITS, 2, 3, False, "streams", "1"),
        (BOTH_LIMITS, 3, 2, True, None, "0"),
    ],
)
def test_decide(
    limits: KeyLimits,
    requests: int | None,
    streams: int | None,
    allowed: bool,
    reason: str | None,
    remaining: str | None,
) -> None:
    d = decide(limits, "alice", Counts(requests, streams, reset_ms=12_500))
    assert (d.allowed, d.reason) == (allowed, reason)
    assert d.headers.get("x-ratelimit-remaining-requests") == remaining
    if limits.requests_per_min:
        assert d.headers["x-ratelimit-limit-requests"] == str(limits.requests_per_min)
        assert d.headers["x-ratelimit-reset-requests"] == "12.5s"
    else:
        assert "x-ratelimit-limit-requests" not in d.headers
    if limits.max_streams and streams is not None:
        assert d.headers["x-fakeai-limit-streams"] == str(limits.max_streams)
        assert d.headers["x-fakeai-remaining-streams"] == str(max(0, limits.max_streams - streams))
    if allowed:
        assert d.error is None
        d.raise_if_refused()
    else:
        assert d.error is not None
        with pytest.raises(KeyRateLimited):
            d.raise_if_refused()


def test_no_limits_allow_without_headers() -> None:
    assert decide(KeyLimits(), "alice", Counts(None, None, 1)) is ALLOW
    assert ALLOW.headers == {}


def test_refused_for_requests_is_openais_429() -> None:
    d = decide(RPM3, "alice", Counts(4, None, reset_ms=12_345))
    e = d.error
    assert isinstance(e, RateLimited)
    assert e.status == 429
    body = e.body()["error"]
    assert body["type"] == "requests"
    assert body["code"] == "rate_limit_exceeded"
    assert "Limit 3" in body["message"]
    assert "12.345s" in body["message"]
    headers = e.headers()
    assert headers["Retry-After"] == "13"  # whole seconds, rounded up: never retried too early
    assert headers["retry-after-ms"] == "12345"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "12.345s"


def test_refused_for_streams_says_so() -> None:
    d = decide(STREAMS2, "alice", Counts(None, 3, reset_ms=1))
    assert d.error is not None
    assert "concurrent streams" in d.error.message
    assert "Limit 2, Running 2" in d.error.message
    assert d.error.headers()["Retry-After"] == "1"


def test_from_settings() -> None:
    s = Settings(key_requests_per_min=10, key_max_streams=2, max_stream_s=30)
    limiter = Limiter.from_settings(Keys("p"), s)
    assert limiter.limits == KeyLimits(10, 2)
    assert limiter.stream_ttl_ms == 90_000  # max_stream_s + a margin
    assert not Limiter.from_settings(Keys("p"), Settings()).enabled


def test_a_keys_limit_keys_share_one_cluster_slot() -> None:
    """One pipeline per request, to one node: the counter and the set carry the tenant's tag."""
    keys = Keys("fakeai")
    for tenant in ("alice", "bob", "anonymous", "a.b-c_d"):
        slots = {key_slot(keys.limit_requests(tenant, w).encode()) for w in (0, 1, 28_333_333)}
        slots.add(key_slot(keys.limit_streams(tenant).encode()))
        assert len(slots) == 1
        assert keys.limit_streams(tenant).startswith("fakeai:limits:")


# -- on Redis -----------------------------------------------------------------------------------


def _sid() -> str:
    return new_stream_id("chat", NOW)


@pytest.mark.redis
@BOTH
async def test_requests_per_minute_across_edges(rc: RedisClient, keys: Keys) -> None:
    """Two edge processes (two limiters) share one count per key and window."""
    edges = [Limiter(keys, RPM3, stream_ttl_s=60), Limiter(keys, RPM3, stream_ttl_s=60)]
    got = [await edges[i % 2].admit(rc, "alice", _sid(), now_ms=NOW + i) for i in range(4)]
    assert [d.allowed for d in got] == [True, True, True, False]
    assert [d.headers["x-ratelimit-remaining-requests"] for d in got] == ["2", "1", "0", "0"]
    assert got[3].reason == "requests"
    assert got[3].headers["x-ratelimit-reset-requests"] == format_duration(60_000 - 12_345 - 3)
    # Another key has its own count; the next minute starts afresh.
    assert (await edges[0].admit(rc, "bob", _sid(), now_ms=NOW)).allowed
    later = await edges[1].admit(rc, "alice", _sid(), now_ms=NOW + WINDOW_MS)
    assert later.allowed
    assert later.headers["x-ratelimit-remaining-requests"] == "2"
    # The window's counter expires with it (no key left behind).
    ttl = await rc.pttl(keys.limit_requests("alice", NOW // WINDOW_MS))
    assert ttl > 0


@pytest.mark.redis
@BOTH
async def test_headers_peek_without_counting(rc: RedisClient, keys: Keys) -> None:
    limiter = Limiter(keys, BOTH_LIMITS, stream_ttl_s=60)
    await limiter.admit(rc, "alice", _sid(), now_ms=NOW)
    for _ in range(2):
        headers = await limiter.headers(rc, "alice", now_ms=NOW + 1)
        assert headers["x-ratelimit-remaining-requests"] == "2"
        assert headers["x-fakeai-remaining-streams"] == "1"
    assert await Limiter(keys, KeyLimits(), stream_ttl_s=1).headers(rc, "alice") == {}


@pytest.mark.redis
@BOTH
async def test_concurrent_streams_end_when_their_stream_finishes(
    rc: RedisClient, keys: Keys
) -> None:
    limiter = Limiter(keys, STREAMS2, stream_ttl_s=60)
    s1, s2, s3, s4, s5 = (_sid() for _ in range(5))
    assert (await limiter.admit(rc, "alice", s1, now_ms=NOW)).allowed
    assert (await limiter.admit(rc, "alice", s2, now_ms=NOW)).allowed
    refused = await limiter.admit(rc, "alice", s3, now_ms=NOW)
    assert (refused.allowed, refused.reason) == (False, "streams")
    assert refused.headers["x-fakeai-remaining-streams"] == "0"
    sk = keys.limit_streams("alice")
    assert await rc.zscore(sk, s3) is None  # a refused stream does not hold a slot
    # s1 finished (the producer wrote its final status); nobody released it: the next
    # request at the limit looks at the meta hashes and drops it.
    await rc.hset(keys.meta(s1), mapping={F.STATUS: "done"})
    await rc.hset(keys.meta(s2), mapping={F.STATUS: "running"})
    assert (await limiter.admit(rc, "alice", s4, now_ms=NOW)).allowed
    assert await rc.zscore(sk, s1) is None
    assert not (await limiter.admit(rc, "alice", _sid(), now_ms=NOW)).allowed
    # An explicit release frees a slot at once.
    await limiter.release(rc, "alice", s2)
    assert (await limiter.admit(rc, "alice", s5, now_ms=NOW)).allowed
    assert await rc.pttl(sk) > 0  # an idle key's set goes away


@pytest.mark.redis
@BOTH
async def test_a_stream_without_meta_holds_its_slot_until_it_lapses(
    rc: RedisClient, keys: Keys
) -> None:
    """A member whose meta hash is missing may be a request whose meta is not written yet:
    it counts until its score (max_stream_s + margin) lapses."""
    limiter = Limiter(keys, KeyLimits(max_streams=1), stream_ttl_s=30)
    assert (await limiter.admit(rc, "alice", _sid(), now_ms=NOW)).allowed
    assert not (await limiter.admit(rc, "alice", _sid(), now_ms=NOW + 29_000)).allowed
    assert (await limiter.admit(rc, "alice", _sid(), now_ms=NOW + 30_001)).allowed


@pytest.mark.redis
@BOTH
async def test_concurrent_admissions_never_exceed_the_limit(rc: RedisClient, keys: Keys) -> None:
    """Many requests at once through three limiters (three edges): at most max admitted."""
    edges = [Limiter(keys, KeyLimits(max_streams=5), stream_ttl_s=60) for _ in range(3)]
    decisions = await asyncio.gather(
        *(edges[i % 3].admit(rc, "alice", _sid(), now_ms=NOW) for i in range(40))
    )
    admitted = sum(d.allowed for d in decisions)
    # Races may refuse too many (both sides of a race back off), never admit too many.
    assert admitted <= 5
    assert await rc.zcard(keys.limit_streams("alice")) == admitted


@pytest.mark.redis
@BOTH
async def test_a_refused_request_still_counts_in_its_window(rc: RedisClient, keys: Keys) -> None:
    """A request refused for its streams was still a request."""
    limiter = Limiter(keys, KeyLimits(requests_per_min=5, max_streams=1), stream_ttl_s=60)
    assert (await limiter.admit(rc, "alice", _sid(), now_ms=NOW)).allowed
    d = await limiter.admit(rc, "alice", _sid(), now_ms=NOW)
    assert d.reason == "streams"
    assert d.headers["x-ratelimit-remaining-requests"] == "3"
