"""Reading logs with redis-py's ordinary commands, and consumer-group creation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from redis.exceptions import ResponseError

from fakeai.streams.client import RedisClient
from fakeai.streams.log.entry import Entry, parse_entry

__all__ = ["PAGE", "ensure_group", "iter_entries", "last_entry", "xrange_pages"]

PAGE = 512
"""Entries per XRANGE call: large enough to amortize the round trip, small enough to stream."""


async def xrange_pages(
    redis: RedisClient, key: str, after: str | None = None
) -> AsyncIterator[list[tuple[bytes, dict[bytes, bytes]]]]:
    """Pages of a log's raw entries after entry id ``after`` (exclusive; None: from the start).

    The ``(`` exclusive range start needs Redis >= 6.2
    (https://redis.io/docs/latest/commands/xrange/). An empty or missing log yields nothing.
    """
    start = "-" if after is None else f"({after}"
    while True:
        page: Any = await redis.xrange(key, min=start, max="+", count=PAGE)
        if page:
            yield page
        if len(page) < PAGE:
            return
        start = f"({page[-1][0].decode()}"


async def iter_entries(
    redis: RedisClient, key: str, after: str | None = None
) -> AsyncIterator[list[Entry]]:
    """Pages of parsed entries after ``after`` (exclusive), in order."""
    async for page in xrange_pages(redis, key, after):
        yield [parse_entry(i, f) for i, f in page]


async def last_entry(redis: RedisClient, key: str) -> Entry | None:
    """The newest entry of a log, or None when the log is empty or missing."""
    rows: Any = await redis.xrevrange(key, max="+", min="-", count=1)
    return parse_entry(*rows[0]) if rows else None


async def ensure_group(redis: RedisClient, streams: Iterable[str], group: str, start: str) -> None:
    """``XGROUP CREATE <stream> <group> <start> MKSTREAM`` on each stream; an existing group
    (BUSYGROUP) is fine, any other error is raised (https://redis.io/docs/latest/commands/
    xgroup-create/). On a cluster each command goes to its stream's node."""
    for key in streams:
        try:
            await redis.xgroup_create(key, group, id=start, mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
