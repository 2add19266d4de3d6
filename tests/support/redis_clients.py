"""Counting the connections a Redis holds, to check who opened which (and when)."""

from __future__ import annotations

import redis.asyncio as aredis

from fakeai.streams.client import connect

__all__ = ["connections_by_node"]


async def connections_by_node(url: str, name: str | None = None) -> dict[str, int]:
    """``{"host:port": connections}`` on the Redis at ``url`` (each primary of a cluster);
    only those with client name ``name`` when it is given. The counting client's own
    connection (one per node) is counted too, the same at every call."""
    client = await connect(url)
    try:
        if isinstance(client, aredis.RedisCluster):
            nodes = client.get_primaries()
            found = {n.name: await client.client_list(target_nodes=n) for n in nodes}
        else:
            found = {url: await client.client_list()}
    finally:
        await client.aclose()
    return {
        node: sum(1 for c in clients if name is None or c.get("name") == name)
        for node, clients in found.items()
    }
