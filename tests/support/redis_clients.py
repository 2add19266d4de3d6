"""Counting the connections a Redis holds, to check who opened which (and when)."""

from __future__ import annotations

import gc
import warnings

import pytest
import redis.asyncio as aredis

from fakeai.streams.client import connect

__all__ = ["DROPS_A_NODE", "collect_removed_node_connections", "connections_by_node"]


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


DROPS_A_NODE = pytest.mark.filterwarnings("ignore:unclosed:ResourceWarning")
"""For a test that kills a cluster master: redis-py 8.1 leaves open the connections to a node
that left the topology which were in use when it was dropped (it closes only the node's idle
ones: redis/redis-py#4053; a proposed fix is redis/redis-py#4207), and the garbage collector
warns about them whenever it runs into them. Use with
:func:`collect_removed_node_connections` at the end of the test, so that no later test meets
them."""


def collect_removed_node_connections() -> None:
    """Collect, without a warning, what :data:`DROPS_A_NODE` says (after the test's clients
    are closed)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "unclosed", ResourceWarning)
        gc.collect()
