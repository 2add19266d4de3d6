"""Connecting to Redis: one factory for every process, a single server or a Redis Cluster.

A cluster is detected by itself (``cluster_enabled:1`` in ``INFO cluster`` of the node the URL
names, https://redis.io/docs/latest/commands/info/), or forced with ``FAKEAI_REDIS_CLUSTER``.
Either way the caller gets a client with the same command methods: ``redis.asyncio.Redis`` or
``redis.asyncio.RedisCluster``, which routes each command to the node of its key's slot and
follows MOVED/ASK redirections and failovers (its pipelines group commands per node).
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeAlias

import redis.asyncio as aredis
from redis.exceptions import RedisError

from fakeai.streams.keys import LAYOUT, Keys

__all__ = [
    "BoundedRedisCluster",
    "LayoutMismatch",
    "RedisClient",
    "check_layout",
    "connect",
    "is_cluster",
]

RedisClient: TypeAlias = "aredis.Redis | aredis.RedisCluster"
"""What :func:`connect` returns; both speak the same commands."""


CLUSTER_NODE_CONNECTIONS = 1024
"""Hard pool bound per cluster node (redis-py raises MaxConnectionsError beyond it)."""


class BoundedRedisCluster(aredis.RedisCluster):
    """A cluster client whose commands and pipelines wait for one of ``concurrency`` permits.

    redis-py's cluster node pools cannot wait for a free connection: every concurrent command
    opens one more, up to the hard bound, then fails. With the permits, at most
    ``concurrency`` commands run at once, so a node holds at most that many connections and a
    burst waits instead (measured before: an edge with 1,000 concurrent requests kept 1,033
    connections open on one node; ``infra/scripts/connections_per_node.py``), like the single
    server's ``BlockingConnectionPool``.
    """

    def __init__(self, *args: Any, concurrency: int = 64, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.permits = asyncio.Semaphore(concurrency)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.permits:
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        permits, run = self.permits, pipe.execute

        async def execute(raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
            async with permits:
                return await run(raise_on_error, allow_redirections)

        pipe.execute = execute  # type: ignore[method-assign]
        return pipe


class LayoutMismatch(RuntimeError):
    """The Redis holds FakeAI data in another key layout than this version reads."""


async def is_cluster(url: str, *, timeout_s: float = 2.0) -> bool:
    """True if the node at ``url`` runs in cluster mode."""
    probe = aredis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        info: dict[str, Any] = await probe.info("cluster")
    except RedisError as e:
        if "unknown" in str(e).lower():  # a server without the section: not a cluster
            return False
        raise
    finally:
        await probe.aclose()
    return bool(int(info.get("cluster_enabled", 0) or 0))


async def connect(
    url: str,
    *,
    cluster: bool | None = None,
    max_connections: int | None = None,
    blocking_pool: bool = False,
    socket_connect_timeout: float = 2.0,
    **kwargs: Any,
) -> RedisClient:
    """A client for ``url``: a cluster client when the server is a cluster node.

    ``max_connections`` bounds the pool of a single server (``blocking_pool``: callers wait for
    a free connection instead of getting an error) and, on a cluster, the commands running at
    once (:class:`BoundedRedisCluster`; default 64), hence the connections per node.
    """
    if cluster is None:
        cluster = await is_cluster(url, timeout_s=socket_connect_timeout)
    if cluster:
        # A cluster node's pool cannot wait for a free connection (redis-py raises
        # MaxConnectionsError at once): the client's permits make bursts wait instead.
        client = BoundedRedisCluster.from_url(
            url,
            socket_connect_timeout=socket_connect_timeout,
            max_connections=CLUSTER_NODE_CONNECTIONS,
            concurrency=max_connections or 64,
            **kwargs,
        )
        try:
            await client.initialize()
        except BaseException:
            await client.aclose()
            raise
        return client
    if blocking_pool:
        pool = aredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections or 100,
            timeout=5,
            socket_connect_timeout=socket_connect_timeout,
            **kwargs,
        )
        return aredis.Redis.from_pool(pool)
    extra: dict[str, Any] = {} if max_connections is None else {"max_connections": max_connections}
    return aredis.Redis.from_url(
        url, socket_connect_timeout=socket_connect_timeout, **extra, **kwargs
    )


async def check_layout(redis: RedisClient, keys: Keys) -> None:
    """Mark a fresh Redis with this key layout; refuse one that holds the old layout.

    Raises:
        LayoutMismatch: data of key layout 1 (no marker, old keys present), or of a layout
            this version does not know. The message names the fix.
    """
    found = await redis.get(keys.layout())
    if found is not None:
        version = found.decode() if isinstance(found, bytes) else str(found)
        if version != LAYOUT:
            raise LayoutMismatch(
                f"this Redis holds FakeAI Streams data in key layout {version} under prefix "
                f"{keys.prefix!r}; this version reads layout {LAYOUT}. Use another "
                "FAKEAI_KEY_PREFIX, or upgrade every process to one version."
            )
        return
    old = 0
    for key in keys.layout1_markers():
        old += int(await redis.exists(key))
    if old:
        raise LayoutMismatch(
            f"this Redis holds FakeAI Streams data in key layout 1 under prefix "
            f"{keys.prefix!r} (keys {keys.prefix}:requests, {keys.prefix}:{{<stream id>}}:chunks); "
            f"this version reads layout {LAYOUT}. Run `fakeai-streams migrate` once to move the "
            "recorded streams to the new layout, or start with another FAKEAI_KEY_PREFIX."
        )
    await redis.set(keys.layout(), LAYOUT, nx=True)
