"""End-to-end fixtures: the whole pipeline (producers, edge, optionally the metrics consumer)
on the test's prefix, once on a single Redis and once on a 3-master Redis Cluster."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from tests.conftest import _delete_prefix, _is_cluster
from tests.support.stack import Stack, run_stack

from fakeai.config import Settings

StartStack = Callable[..., contextlib.AbstractContextManager[Stack]]


@pytest.fixture(params=["single", "cluster"])
def e2e_redis_url(request: pytest.FixtureRequest) -> str:
    """Every end-to-end test runs on a single redis-server and on the session's cluster."""
    url: str = request.getfixturevalue("redis_url" if request.param == "single" else "cluster_url")
    return url


@pytest.fixture
def store(e2e_redis_url: str, key_prefix: str) -> Iterator[redis.Redis | redis.RedisCluster]:
    """A sync client of the test's Redis (a cluster client on a cluster); the test's keys are
    deleted afterwards."""
    client: redis.Redis | redis.RedisCluster
    if _is_cluster(e2e_redis_url):
        client = redis.RedisCluster.from_url(e2e_redis_url)
    else:
        client = redis.Redis.from_url(e2e_redis_url)
    try:
        yield client
    finally:
        if isinstance(client, redis.RedisCluster):
            client.disconnect_connection_pools()  # close() leaves node sockets open (8.1)
        client.close()
        _delete_prefix(e2e_redis_url, key_prefix)


@pytest.fixture
def start_stack(e2e_redis_url: str, key_prefix: str, store: Any) -> StartStack:
    """``with start_stack(**settings) as stack:``; the prefix's keys are deleted afterwards."""

    def start(
        producers: int = 1, metrics: bool = False, **overrides: Any
    ) -> contextlib.AbstractContextManager[Stack]:
        values: dict[str, Any] = {"redis_url": e2e_redis_url, "key_prefix": key_prefix}
        values.update(overrides)
        return run_stack(Settings(**values), producers=producers, metrics=metrics)

    return start


@pytest.fixture
def stack(start_stack: StartStack) -> Iterator[Stack]:
    """Producer + edge + metrics consumer with latency simulation off (as fast as possible)."""
    with start_stack(latency_simulation=False, metrics=True) as s:
        yield s
