"""Reading a stream's log: the one XRANGE pager that the edge and the recordings share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aredis

__all__ = ["PAGE", "xrange_pages"]

PAGE = 512
"""Entries per XRANGE call: large enough to amortize the round trip, small enough to stream."""


async def xrange_pages(
    redis: aredis.Redis, key: str, after: str | None = None
) -> AsyncIterator[list[tuple[bytes, dict[bytes, bytes]]]]:
    """Pages of a log's entries after entry id ``after`` (exclusive; None: from the start).

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
