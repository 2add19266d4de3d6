"""Running one service in a process: the Redis checked before it starts, uvloop when installed,
stopped by SIGINT or SIGTERM, with the garbage collector tuned for per-chunk allocation."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from fakeai.config import Settings
from fakeai.streams import Keys
from fakeai.streams.client import check_layout, connect

__all__ = ["RedisUnusable", "preflight", "redact", "run_until_signalled", "tune_gc"]

T = TypeVar("T")


class RedisUnusable(RuntimeError):
    """The configured Redis cannot be reached or used; the message says which and why."""


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


async def preflight(settings: Settings, *, layout: bool = True, timeout_s: float = 2.0) -> bool:
    """Check the Redis a process is about to use; returns True when it is a cluster.

    One PING without retries (redis-py's default retries stretch an unreachable server into
    many seconds), then a client from :func:`~fakeai.streams.client.connect`, and with
    ``layout`` the key layout (:func:`~fakeai.streams.client.check_layout` marks a fresh Redis).

    Raises:
        RedisUnusable: no answer within ``timeout_s``, or an error reply (auth, a cluster
            that is down).
        LayoutMismatch: the Redis holds another key layout.
    """
    url = settings.redis_url
    if not url:
        raise RedisUnusable("no Redis configured: pass --redis-url or set FAKEAI_REDIS_URL")
    probe = aredis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        await probe.ping()
    except (RedisError, OSError) as e:
        raise RedisUnusable(f"cannot reach Redis at {redact(url)}: {_said(e)}") from e
    finally:
        await probe.aclose()
    try:
        client = await connect(url, cluster=settings.redis_cluster, socket_timeout=timeout_s)
    except (RedisError, OSError) as e:
        raise RedisUnusable(f"cannot use Redis at {redact(url)}: {_said(e)}") from e
    try:
        if layout:
            await check_layout(client, Keys(settings.key_prefix))
        return isinstance(client, aredis.RedisCluster)
    except RedisError as e:
        raise RedisUnusable(f"cannot use Redis at {redact(url)}: {_said(e)}") from e
    finally:
        await client.aclose()


def run_until_signalled(service: Callable[[asyncio.Event], Awaitable[T]]) -> T | None:
    """Run ``service(stop)``; SIGINT/SIGTERM set ``stop`` and the service shuts down in order.

    Returns what the service returned (None when a second Ctrl-C interrupted it). Exceptions
    propagate: the CLI turns the expected ones into one line and an exit status.
    """

    async def _main() -> T:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await service(stop)

    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop
        except ImportError:
            return asyncio.run(_main())
        else:
            return uvloop.run(_main())
    return None


def tune_gc(gen0: int = 50_000) -> None:
    """Fewer, cheaper garbage collections for a process that allocates per chunk.

    The producer builds, and the edge parses and writes, a few short-lived objects per chunk
    (an edge XREAD reply of 750 entries is ~7,500), so the default gen0 threshold (700) runs a
    young collection every few dozen chunks and a full one, which walks every live object of a
    thousand open streams, every few seconds: a pause that delays every chunk due in it (the
    ITL tail at 1,000 streams). Objects alive at start-up (modules, profiles, vocabularies, the
    app) are moved out of the collector's sight
    (``gc.freeze``, https://docs.python.org/3/library/gc.html#gc.freeze).
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0, gen1, gen2)


def _said(e: BaseException) -> str:
    """An error's message as a clause (redis-py ends some with a period)."""
    return str(e).strip().rstrip(".") or type(e).__name__
