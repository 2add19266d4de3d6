"""The failover keep-alive (:mod:`fakeai.services.producer.failover`) against a real Redis.

Regression (issue 9): the keep-alive task died on an unexpected Redis error without a log line,
and the requests it held stayed pending, looking abandoned to every other producer. The
invariant: an unexpected error is logged once per kind, with its traceback, and the keep-alive
goes on refreshing the requests held here.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aredis
from redis.exceptions import NoPermissionError
from tests.integration.producer.conftest import StartProducer
from tests.integration.producer.producerkit import PARTITIONS, chat_request, publish
from tests.support.servers import eventually

from fakeai.config import Settings
from fakeai.streams import PRODUCERS_GROUP, Keys

pytestmark = pytest.mark.redis

FAILOVER_LOGGER = "fakeai.services.producer.failover"


@pytest.fixture
async def no_xautoclaim_url(r: aredis.Redis, redis_url: str) -> AsyncIterator[str]:
    """The test Redis's URL as a user that may run every command but XAUTOCLAIM (which only
    the keep-alive sends): a real Redis error the keep-alive does not expect."""
    user = f"u{uuid.uuid4().hex[:12]}"
    await r.execute_command("ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", "-xautoclaim")
    try:
        yield redis_url.replace("redis://", f"redis://{user}:pw@", 1)
    finally:
        await r.execute_command("ACL", "DELUSER", user)


async def test_keepalive_does_not_die_silently_on_an_unexpected_redis_error(
    r: aredis.Redis,
    keys: Keys,
    no_xautoclaim_url: str,
    make_settings: Callable[..., Settings],
    start_producer: StartProducer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=FAILOVER_LOGGER)
    settings = make_settings(redis_url=no_xautoclaim_url)
    req = chat_request(max_tokens=400, ttft_ms=0, itl_ms=50)  # runs through the whole test
    key = keys.requests_for(req.stream_id, PARTITIONS)

    def failures() -> list[logging.LogRecord]:
        return [
            rec
            for rec in caplog.records
            if rec.name == FAILOVER_LOGGER and rec.levelno >= logging.ERROR
        ]

    async def held() -> dict[str, Any] | None:
        rows = await r.xpending_range(key, PRODUCERS_GROUP, min="-", max="+", count=1)
        return rows[0] if rows else None

    async with start_producer(settings, heartbeat_s=0.1, reclaim_idle_s=1.0, drain_s=0.2) as p:
        await publish(r, keys, req)
        assert await eventually(held, timeout_s=10), "the request was never delivered"

        async def failed() -> bool:
            return bool(failures())

        await eventually(failed, timeout_s=10)  # a keep-alive turn met NOPERM on XAUTOCLAIM
        # Yet the keep-alive goes on refreshing the request held here: its idle time drops
        # back, again and again. Counted, not timed: a loaded machine slows the turns down, it
        # cannot make a dead keep-alive refresh.
        refreshes = 0
        last_idle: int | None = None

        async def refreshed_three_times() -> bool:
            nonlocal refreshes, last_idle
            row = await held()
            assert row is not None
            assert row["consumer"] == p.consumer.encode(), row
            idle = row["time_since_delivered"]
            if last_idle is not None and idle < last_idle:
                refreshes += 1
            last_idle = idle
            return refreshes >= 3

        await eventually(refreshed_three_times, timeout_s=10)
        assert p.failover.running
    assert len(failures()) == 1, [rec.getMessage() for rec in failures()]  # once per kind
    [failure] = failures()
    assert failure.exc_info is not None
    assert isinstance(failure.exc_info[1], NoPermissionError)
