"""open_pool: a client's command connections opened before the first requests need them."""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aredis
from tests.conftest import BOTH
from tests.support.redis_clients import connections_by_node

from fakeai.services.warmup import open_pool
from fakeai.streams.client import RedisClient, connect

pytestmark = pytest.mark.redis


@contextlib.asynccontextmanager
async def named_client(url: str) -> AsyncIterator[tuple[RedisClient, str]]:
    """A client (a bounded, waiting pool) whose connections carry a name of their own."""
    name = f"warm-{uuid.uuid4().hex[:8]}"
    client = await connect(url, max_connections=32, blocking_pool=True, client_name=name)
    try:
        yield client, name
    finally:
        await client.aclose()


@BOTH
async def test_open_pool_opens_that_many_connections_on_each_primary(store_url: str) -> None:
    async with named_client(store_url) as (client, name):
        # A cluster client opens a connection or two to a seed node to read the slot map.
        assert sum((await connections_by_node(store_url, name)).values()) <= 2
        await open_pool(client, 8)
        opened = await connections_by_node(store_url, name)
        each = math.ceil(8 / len(opened)) if isinstance(client, aredis.RedisCluster) else 8
        assert min(opened.values()) >= each  # the seed node may keep its slot-map connection
        assert sum(opened.values()) <= each * len(opened) + 2


@pytest.mark.parametrize("connections", [0, 16])
async def test_a_burst_after_open_pool_opens_no_connection(
    redis_url: str, connections: int
) -> None:
    async with named_client(redis_url) as (client, name):
        await open_pool(client, connections)
        assert await connections_by_node(redis_url, name) == {redis_url: connections}
        await asyncio.gather(*(client.ping() for _ in range(connections)))
        assert await connections_by_node(redis_url, name) == {redis_url: connections}
