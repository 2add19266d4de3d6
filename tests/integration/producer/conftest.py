"""Producer test fixtures: the Redis under test, settings for it and the test's prefix, and
running producers.

Tests run on the session's single Redis (``redis_url``); a test marked :data:`BOTH` runs once
on it and once on the session's 3-master cluster (``cluster_url``): ``store_url`` is the one in
use and ``rc`` a client of it (``fakeai.streams.client.connect``), as in the edge's tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from fakeai.config import Settings
from fakeai.services.producer.service import Producer


@pytest.fixture
def make_settings(store_url: str, key_prefix: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": store_url,
            "key_prefix": key_prefix,
            "latency_simulation": False,
        }
        values.update(overrides)
        return Settings(**values)

    return make


StartProducer = Callable[..., contextlib.AbstractAsyncContextManager[Producer]]


@pytest.fixture
def start_producer(make_settings: Callable[..., Settings]) -> StartProducer:
    """``async with start_producer(settings=..., **producer_args) as p:`` a started producer."""

    @contextlib.asynccontextmanager
    async def start(settings: Settings | None = None, **kwargs: Any) -> AsyncIterator[Producer]:
        kwargs.setdefault("heartbeat_s", 0.2)
        kwargs.setdefault("reclaim_idle_s", 30.0)
        kwargs.setdefault("drain_s", 2.0)
        producer = await asyncio.wait_for(
            Producer.create(settings or make_settings(), **kwargs), 10
        )
        try:
            await asyncio.wait_for(producer.start(), 10)
            await asyncio.wait_for(producer.cancels.ready.wait(), 10)
            yield producer
        finally:
            await producer.shutdown()

    return start
