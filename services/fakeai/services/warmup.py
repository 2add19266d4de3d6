"""Paying a process's first-request costs before it says ready.

A command pool opens its connections lazily: one more each time a command finds none idle. A
burst of requests on a fresh edge therefore opens one connection per request in flight (16 at
once took an edge from 4 connections to Redis to 17), and each costs, on the event loop, the TCP
connect, the handshake (``AUTH``, ``CLIENT SETINFO`` twice) and, in redis-py 8, a look-up of its
own version in the installed packages' metadata (``importlib.metadata.version``, ~1 ms of CPU;
``redis.utils.get_lib_version``). While the loop does that, the other requests' bytes wait
unread, so their arrival stamps (the TTFT origin) are late by that much and the client sees a
longer TTFT than it asked for. :func:`open_pool` opens them before the process says ready.
"""

from __future__ import annotations

import asyncio
import logging
import math

import redis.asyncio as aredis

from fakeai.streams.client import RedisClient

__all__ = ["open_pool"]

logger = logging.getLogger(__name__)


async def open_pool(redis: RedisClient, connections: int) -> None:
    """Leave ``connections`` command connections open and idle in ``redis``'s pool.

    ``connections`` PINGs at once: each holds a connection until its reply, so the pool opens
    as many as it lacks. On a cluster the bound is per primary node (a command goes to the node
    of its keys, so a burst spreads over them): ``connections`` shared among the primaries.

    Every PING runs to its end, answered or failed, before this returns: none is left opening
    a connection behind the caller's back (one that closes the client on an error would leak
    it). The pool is an optimisation, so some PINGs failing (a starved machine past the connect
    timeout, ``maxclients`` reached) is logged and the rest open on demand.

    Raises what connecting raises when every PING failed (Redis unreachable): the caller
    treats it as at start-up.
    """
    if connections < 1:
        return
    if isinstance(redis, aredis.RedisCluster):
        primaries = redis.get_primaries()
        each = math.ceil(connections / max(1, len(primaries)))
        pings = [redis.ping(target_nodes=primaries) for _ in range(each)]
    else:
        pings = [redis.ping() for _ in range(connections)]
    results = await asyncio.gather(*pings, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if len(failed) == len(results):
        raise failed[0]
    if failed:
        logger.warning(
            "opened %d of %d pool connections (the first error: %s); the rest open on demand",
            len(results) - len(failed),
            len(results),
            failed[0],
        )
    else:
        logger.debug("opened the command pool (%d connections)", connections)
