"""Raw Redis failures as the API's 503s: the one place their codes and messages are made.

::

    redis_unavailable     Redis (or a node, or a slot of the cluster) does not answer
    redis_out_of_memory   Redis refuses writes: ``maxmemory`` reached with ``noeviction``
                          (the OOM reply, https://redis.io/docs/latest/develop/reference/eviction/)

Both carry ``Retry-After``: the client should come back, to this edge or another.
"""

from __future__ import annotations

import logging

from redis.exceptions import (
    AskError,
    ClusterError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fakeai.errors import ApiError, ServiceUnavailable

__all__ = [
    "OOM_RETRY_AFTER_S",
    "REDIS_DOWN",
    "on_out_of_memory",
    "on_redis_down",
    "out_of_memory",
    "redis_unavailable",
]

logger = logging.getLogger(__name__)

REDIS_DOWN = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterError,
    RedisClusterException,
    TryAgainError,
    AskError,
)
"""Raw Redis errors answered as a 503 ``redis_unavailable``: Redis, a node or a slot
unreachable for now (a cluster in failover or resharding; redis-py follows MOVED and ASK itself
and raises only once it gives up)."""

OOM_RETRY_AFTER_S = 5.0
"""Memory is freed by expiry and trimming, or by an operator: not within a second."""


def redis_unavailable(detail: str = "") -> ServiceUnavailable:
    message = "Redis is unavailable; retry later"
    if detail:
        message = f"Redis is unavailable ({detail}); retry later"
    return ServiceUnavailable(message, code="redis_unavailable", retry_after_s=1)


def out_of_memory() -> ServiceUnavailable:
    return ServiceUnavailable(
        "Redis is out of memory (maxmemory): it refuses writes, so no new stream can be "
        "created; retry later, or free memory / raise maxmemory on the Redis server",
        code="redis_out_of_memory",
        retry_after_s=OOM_RETRY_AFTER_S,
    )


def _response(e: ApiError) -> Response:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers())


async def on_redis_down(request: Request, exc: Exception) -> Response:
    """Exception handler: a :data:`REDIS_DOWN` error raised by a route (see fakeai.errors)."""
    logger.warning("Redis unavailable: %s", exc)
    return _response(redis_unavailable())


async def on_out_of_memory(request: Request, exc: Exception) -> Response:
    """Exception handler: Redis refused a write with OOM."""
    logger.warning("Redis refused a write: out of memory (maxmemory): %s", exc)
    return _response(out_of_memory())
