"""open_pool: a client's command connections opened before the first requests need them."""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aredis
from redis.exceptions import ConnectionError as RedisConnectionError
from tests.conftest import BOTH
from tests.support.redis_clients import connections_by_node
from tests.support.servers import eventually

from fakeai.embedded_redis import EmbeddedRedis
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


@contextlib.asynccontextmanager
async def own_server() -> AsyncIterator[tuple[str, aredis.Redis]]:
    """A Redis of its own, whose ``maxclients`` a test may lower (connections beyond it are
    refused: "max number of clients reached"), and an admin connection to it (which counts
    towards the limit)."""
    server = EmbeddedRedis(persistent=False)
    server.start()
    admin = aredis.Redis.from_url(server.url)
    try:
        await admin.ping()
        yield server.url, admin
    finally:
        await admin.aclose()
        server.stop()


async def _named(admin: aredis.Redis, name: str) -> int:
    return sum(1 for c in await admin.client_list() if c.get("name") == name)


async def test_a_pool_partly_refused_opens_what_it_can_and_leaves_nothing_running() -> None:
    """Some connections refused (maxclients; a starved machine past the connect timeout is
    the same): open_pool returns once every PING has ended, without raising, with the
    connections Redis took; closing the client then closes all of them."""
    async with own_server() as (url, admin):
        client = await connect(url, max_connections=32, blocking_pool=True, client_name="part")
        await admin.config_set("maxclients", 6)
        try:
            before = asyncio.all_tasks()
            await open_pool(client, 16)
            assert asyncio.all_tasks() == before  # no PING left opening a connection
            opened = await _named(admin, "part")
            assert 1 <= opened <= 5  # the admin holds one of the 6
        finally:
            await client.aclose()
        assert await eventually(lambda: _zero(admin, "part"))


async def test_a_pool_wholly_refused_raises_and_leaves_nothing_running() -> None:
    async with own_server() as (url, admin):
        client = await connect(url, max_connections=32, blocking_pool=True, client_name="none")
        await admin.config_set("maxclients", 1)  # the admin holds the only one
        try:
            before = asyncio.all_tasks()
            with pytest.raises(RedisConnectionError, match="max number of clients"):
                await open_pool(client, 8)
            assert asyncio.all_tasks() == before
        finally:
            await client.aclose()
        assert await _named(admin, "none") == 0


async def _zero(admin: aredis.Redis, name: str) -> bool:
    return await _named(admin, name) == 0
