"""The one adapter to redis-py's raw connection calls: pipelined packed commands, routed per
node, and dedicated connections for blocking reads.

Hot paths (the producer's writes, the edge hub's reads, the metrics consumer's reads) send
commands already in the Redis protocol and read replies without redis-py's per-command packing
and reply callbacks. That needs calls redis-py does not document as public
(``ConnectionPool.get_connection``, ``ClusterNode.acquire_connection``,
``Connection.send_packed_command``, ``Connection.read_response(disable_decoding=True)``); they
live here and nowhere else, and ``tests/contract/test_log_contract.py`` fails if a redis-py
upgrade breaks them.

Routing. Every command group names the *slot* of its keys (:meth:`Link.slot`, 0 on a single
server). On a Redis Cluster, :meth:`Link.execute` sends the groups of each node in ONE write on
one connection to that node, the nodes concurrently; groups of one slot keep their order.
Groups answered with a redirection (MOVED, ASK), TRYAGAIN or CLUSTERDOWN (resharding, a
failover) are sent again, in order, after the slot map is refreshed, for up to
``redirect_deadline_s``; a command that already ran may thus run twice, which every writer here
tolerates (log entries have deterministic ids, the firehose is at-least-once, the rest is
idempotent). A connection error refreshes the slot map and raises: the caller retries.

Blocking reads (:class:`Reader`) get a connection of their own, never a pooled one: a cancelled
blocking read can leave an unread reply on its connection (redis/redis-py#2663, #2624), so a
reader is closed, not reused, after an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Sequence
from typing import Any, TypeAlias

import redis.asyncio as aredis
from redis.asyncio.connection import AbstractConnection as Connection
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    ResponseError,
    TryAgainError,
)

from fakeai.streams.client import RedisClient
from fakeai.streams.log.entry import pack_command

__all__ = ["Group", "Link", "Reader", "is_redirect"]

Group: TypeAlias = tuple[int, bytes, int]
"""``(slot, packed commands, number of commands)``: commands of one slot, in the protocol."""

_REDIRECTS = (AskError, TryAgainError, ClusterDownError)  # MovedError is an AskError


def is_redirect(reply: object) -> bool:
    """A reply that means "not here, not now" on a cluster (MOVED, ASK, TRYAGAIN, CLUSTERDOWN)."""
    return isinstance(reply, _REDIRECTS)


class Link:
    """Raw I/O over a :data:`~fakeai.streams.client.RedisClient` (see the module docstring)."""

    def __init__(self, client: RedisClient, *, redirect_deadline_s: float = 10.0) -> None:
        self.client = client
        self.cluster = isinstance(client, aredis.RedisCluster)
        self.redirect_deadline_s = redirect_deadline_s
        self._node_clients: dict[str, aredis.Redis] = {}

    # -- routing -------------------------------------------------------------------------

    def slot(self, key: str | bytes) -> int:
        """The cluster slot of ``key`` (0 on a single server)."""
        if isinstance(self.client, aredis.RedisCluster):
            return self.client.keyslot(key)
        return 0

    def read_sets(self, keys: Sequence[bytes]) -> list[list[bytes]]:
        """``keys`` split into the sets that one multi-key read may name: all of them on a
        single server, one set per slot on a cluster (CROSSSLOT otherwise, even on one node)."""
        if not self.cluster:
            return [list(keys)] if keys else []
        sets: dict[int, list[bytes]] = {}
        for key in keys:
            sets.setdefault(self.slot(key), []).append(key)
        return list(sets.values())

    async def refresh(self) -> None:
        """Reload the cluster's slot map (nothing on a single server)."""
        if isinstance(self.client, aredis.RedisCluster):
            await self.client.nodes_manager.initialize()

    def node_client(self, key: str | bytes) -> aredis.Redis:
        """A plain client whose connections go to the master of ``key``'s slot (the client
        itself on a single server), for a MULTI/EXEC of that slot's keys.

        Why not the cluster client's own ``pipeline(transaction=True)``: in redis-py 8.1 its
        ``TransactionStrategy`` runs each queued command through a thread and a fresh event
        loop, about 0.5 ms per command. A slot that moved answers MOVED/ASK to the caller, who
        calls :meth:`close_node_clients` and :meth:`refresh` and retries.
        """
        cluster = self.client
        if not isinstance(cluster, aredis.RedisCluster):
            return cluster
        node = cluster.get_node_from_key(key)  # type: ignore[arg-type]
        if node is None:  # only for replica look-ups; a slot always has a master
            raise ConnectionError(f"no node serves the slot of {key!r}")
        client = self._node_clients.get(node.name)
        if client is None:
            pool = aredis.ConnectionPool(
                connection_class=node.connection_class, **node.connection_kwargs
            )
            client = self._node_clients[node.name] = aredis.Redis.from_pool(pool)
        return client

    async def close_node_clients(self) -> None:
        """Close the clients :meth:`node_client` made (after a failure, or at the end)."""
        clients, self._node_clients = self._node_clients, {}
        for client in clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()

    # -- pipelined commands --------------------------------------------------------------

    async def execute(self, groups: Sequence[Group]) -> list[Any]:
        """Run every command of ``groups``; per command its raw reply or its error
        (a ``ResponseError`` instance), in the order of ``groups``.

        Raises ``ConnectionError``/``TimeoutError``/``OSError`` when a node cannot be reached.
        """
        if not isinstance(self.client, aredis.RedisCluster):
            pool = self.client.connection_pool
            conn = await pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                return await _roundtrip(conn, [g[1] for g in groups], sum(g[2] for g in groups))
            finally:
                await pool.release(conn)
        return await self._execute_cluster(groups)

    async def _execute_cluster(self, groups: Sequence[Group]) -> list[Any]:
        out: list[list[Any] | None] = [None] * len(groups)
        todo = list(range(len(groups)))
        deadline = time.monotonic() + self.redirect_deadline_s
        pause = 0.02
        while True:
            await self._execute_nodes(groups, todo, out)
            again = [i for i in todo if any(map(is_redirect, out[i] or ()))]
            if not again or time.monotonic() > deadline:
                break
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)
            await self.refresh()
            todo = again
        return [reply for replies in out for reply in (replies or ())]

    async def _execute_nodes(
        self, groups: Sequence[Group], todo: list[int], out: list[list[Any] | None]
    ) -> None:
        cluster = self.client
        assert isinstance(cluster, aredis.RedisCluster)
        manager = cluster.nodes_manager
        per_node: dict[str, list[int]] = {}
        nodes: dict[str, Any] = {}
        for i in todo:
            node = manager.get_node_from_slot(groups[i][0])
            nodes[node.name] = node
            per_node.setdefault(node.name, []).append(i)

        async def one(name: str, idx: list[int]) -> None:
            node = nodes[name]
            conn = node.acquire_connection()
            try:
                replies = await _roundtrip(
                    conn, [groups[i][1] for i in idx], sum(groups[i][2] for i in idx)
                )
            finally:
                node.release(conn)
            start = 0
            for i in idx:
                n = groups[i][2]
                out[i] = replies[start : start + n]
                start += n

        results = await asyncio.gather(
            *(one(name, idx) for name, idx in per_node.items()), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            with contextlib.suppress(Exception):
                await self.refresh()
            raise failures[0]

    # -- blocking reads ------------------------------------------------------------------

    async def reader(self, key: str | bytes) -> Reader:
        """A dedicated connection to the node that holds ``key`` (a master), connected."""
        if isinstance(self.client, aredis.RedisCluster):
            node = self.client.get_node_from_key(key)  # type: ignore[arg-type]
            if node is None:  # only for replica look-ups; a master is always there
                raise ConnectionError(f"no node serves the slot of {key!r}")
            conn: Connection = node.connection_class(**node.connection_kwargs)
            node_name: str | None = node.name
        else:
            pool = self.client.connection_pool
            conn = pool.connection_class(**pool.connection_kwargs)
            node_name = None
        reader = Reader(self, conn, node_name)
        try:
            await conn.connect()  # type: ignore[no-untyped-call]
            reader.client_id = int(await reader.call(pack_command(b"CLIENT", b"ID")))
        except BaseException:
            await reader.close()
            raise
        return reader

    async def _unblock(self, node_name: str | None, client_id: int) -> bool:
        if isinstance(self.client, aredis.RedisCluster):
            node = self.client.get_node(node_name=node_name)
            if node is None:
                return False
            return bool(await node.execute_command("CLIENT UNBLOCK", client_id))
        return bool(await self.client.execute_command("CLIENT UNBLOCK", client_id))  # type: ignore[no-untyped-call]


class Reader:
    """One dedicated connection for blocking reads (see :meth:`Link.reader`)."""

    def __init__(self, link: Link, conn: Connection, node_name: str | None) -> None:
        self._link = link
        self._conn = conn
        self.node = node_name
        """The cluster node it talks to (``host:port``), None on a single server."""
        self.client_id = 0

    async def call(self, packed: bytes) -> Any:
        """Send one packed command and return its raw reply (bytes, lists, a dict in RESP3,
        None); an error reply raises ``ResponseError`` (``MovedError`` when the slot moved)."""
        await self._conn.send_packed_command(packed, check_health=False)
        return await self._conn.read_response(timeout=math.inf)

    async def unblock(self) -> bool:
        """``CLIENT UNBLOCK`` this reader's blocked command from another connection to its node
        (https://redis.io/docs/latest/commands/client-unblock/); False when nothing was blocked
        yet (the command may still be on its way)."""
        return await self._link._unblock(self.node, self.client_id)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._conn.disconnect(nowait=True)


async def _roundtrip(conn: Connection, parts: list[bytes], n: int) -> list[Any]:
    """Write ``parts`` (n commands) in one write, read n raw replies under one deadline.

    Any failure other than an error reply or a cancellation is a broken connection to the
    caller (``ConnectionError``): redis-py can fail in other ways when a connection is closed
    under it, e.g. ``AttributeError`` on its ``_writer`` when a cluster client's slot-map
    refresh closed the node's connections mid-send during a failover.
    """
    try:
        return await _exchange(conn, parts, n)
    except (ConnectionError, TimeoutError, OSError, asyncio.CancelledError):
        raise
    except Exception as e:
        raise ConnectionError(f"connection to Redis broke: {e!r}") from e


async def _exchange(conn: Connection, parts: list[bytes], n: int) -> list[Any]:
    replies: list[Any] = []
    try:
        # One deadline for the whole batch instead of redis-py's one per reply.
        async with asyncio.timeout(conn.socket_timeout):
            await conn.send_packed_command(parts, check_health=False)
            for _ in range(n):
                try:
                    # timeout=inf: no per-reply timeout context (the batch has one).
                    replies.append(
                        await conn.read_response(disable_decoding=True, timeout=math.inf)
                    )
                except ResponseError as e:  # read whole: the connection stays in sync
                    replies.append(e)
    except BaseException:
        # Unread replies would desynchronize the next user of this connection.
        await conn.disconnect(nowait=True)
        raise
    return replies
