"""fakeai.streams.client: cluster detection, and a cluster client that waits instead of
opening a connection per concurrent command."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis
import redis.asyncio as aredis

from fakeai.streams.client import BoundedRedisCluster, connect, is_cluster

pytestmark = pytest.mark.redis


async def test_a_cluster_is_detected_and_a_single_server_is_not(
    redis_url: str, cluster_url: str
) -> None:
    assert await is_cluster(cluster_url)
    assert not await is_cluster(redis_url)
    single = await connect(redis_url)
    cluster = await connect(cluster_url)
    try:
        assert type(single) is aredis.Redis
        assert isinstance(cluster, BoundedRedisCluster)
    finally:
        await single.aclose()
        await cluster.aclose()


def _clients(port: int) -> int:
    c = redis.Redis(port=port)
    try:
        return int(c.info("clients")["connected_clients"])
    finally:
        c.close()


async def test_a_burst_waits_for_permits_instead_of_opening_a_connection_each(
    cluster_url: str,
) -> None:
    """Regression: 1,000 concurrent requests on an edge kept ~1,000 connections open on one
    node (redis-py's cluster pools cannot wait); now a node holds at most ``max_connections``."""
    client = await connect(cluster_url, max_connections=8)
    assert isinstance(client, aredis.RedisCluster)
    ports = [int(n.port) for n in client.get_primaries()]
    before = [_clients(p) for p in ports]
    prefix = f"b{uuid.uuid4().hex[:8]}"
    try:

        async def one(i: int) -> None:
            if i % 2:
                await client.set(f"{prefix}:{{{i}}}", i)
            else:
                pipe = client.pipeline()
                pipe.set(f"{prefix}:{{{i}}}", i)
                pipe.get(f"{prefix}:{{{i}}}")
                assert (await pipe.execute())[1] == str(i).encode()

        await asyncio.gather(*(one(i) for i in range(400)))
        grown = [_clients(p) - b for p, b in zip(ports, before, strict=True)]
        assert max(grown) <= 8, grown
        assert await client.get(f"{prefix}:{{7}}") == b"7"
    finally:
        for i in range(400):
            await client.delete(f"{prefix}:{{{i}}}")
        await client.aclose()
