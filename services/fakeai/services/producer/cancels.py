"""The cancel listener: every producer reads ``Keys.cancels()`` (no group) and stops its streams.

Each producer sees every cancel signal and acts on those whose stream runs here; a cancel that
arrives before its stream starts is caught by the ``cancel_requested`` meta field, which the
stream checks when it starts. The listener blocks on a dedicated connection
(``single_connection_client``), so a cancelled blocking read never goes back to a shared pool,
and it reads from a concrete id resolved once at start and then advanced entry by entry:
re-sending ``$`` on every XREAD would lose signals appended between two calls
(https://redis.io/docs/latest/commands/xread/#the-special--id; project notes, redis-faststream
§2.3). A Redis outage is retried with backoff from the same id, so no signal is skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import msgspec
import redis.asyncio as aredis

from fakeai.services.producer.backoff import RETRYABLE, Backoff, raise_if_cancelling
from fakeai.streams import Keys
from fakeai.wire import CancelSignal, decode_cancel

__all__ = ["CancelListener"]

logger = logging.getLogger(__name__)


class CancelListener:
    """Calls ``on_cancel(signal)`` for every signal appended after the listener started."""

    def __init__(
        self,
        url: str,
        keys: Keys,
        on_cancel: Callable[[CancelSignal], None],
        *,
        block_ms: int = 2000,
        count: int = 100,
    ) -> None:
        self._url = url
        self._key = keys.cancels()
        self._on_cancel = on_cancel
        self._block_ms = block_ms
        self._count = count
        self.last_id: str | None = None
        """The id after which the next read starts (None until resolved)."""
        self.ready = asyncio.Event()
        """Set once the start id is resolved: signals appended from then on are seen."""

    async def run(self) -> None:
        """Listen until cancelled."""
        client = aredis.Redis.from_url(self._url, single_connection_client=True)
        backoff = Backoff()
        try:
            while True:
                raise_if_cancelling()
                try:
                    if self.last_id is None:
                        self.last_id = await self._resolve_start(client)
                        self.ready.set()
                    reply: Any = await client.xread(
                        {self._key: self.last_id}, count=self._count, block=self._block_ms
                    )
                except RETRYABLE as e:
                    if backoff.failures == 0:
                        logger.warning("cancel listener: Redis unavailable (%s); retrying", e)
                    await backoff.sleep()
                    continue
                backoff.reset()
                for _key, entries in reply or ():
                    for raw_id, fields in entries:
                        self.last_id = raw_id.decode()
                        self._dispatch(fields)
        finally:
            await client.aclose()

    async def _resolve_start(self, client: aredis.Redis) -> str:
        rows: Any = await client.xrevrange(self._key, max="+", min="-", count=1)
        return str(rows[0][0].decode()) if rows else "0-0"

    def _dispatch(self, fields: dict[bytes, bytes]) -> None:
        raw = fields.get(b"c")
        if raw is None:
            logger.warning("cancel listener: entry without field 'c' ignored")
            return
        try:
            signal = decode_cancel(raw)
        except msgspec.DecodeError as e:
            logger.warning("cancel listener: undecodable signal ignored (%s)", e)
            return
        self._on_cancel(signal)
