"""The cancel listener: every producer reads ``Keys.cancels()`` (no group) and stops its streams.

Each producer sees every cancel signal and acts on those whose stream runs here, and remembers
the others for a while (``Producer._on_cancel`` in :mod:`.service`): a request read after its
signal is cancelled at once. A cancel written before the producer listened is caught by the
``cancel_requested`` meta field, which the stream checks when it starts.

The listener blocks on a dedicated connection to the node that holds the key
(:meth:`fakeai.streams.log.Link.reader`, a single server or a cluster alike), so a cancelled
blocking read never goes back to a shared pool, and it reads from a concrete id resolved once at
start and then advanced entry by entry: re-sending ``$`` on every XREAD would lose signals
appended between two calls (https://redis.io/docs/latest/commands/xread/#the-special--id;
project notes, redis-faststream §2.3). A Redis outage, or the key's slot moving to another node
(MOVED, a failover), closes the connection; the listener opens a new one to the node that
holds the key then, after a backoff, and reads on from the same id, so no signal is skipped.
Any other error is logged with its traceback once per kind and retried the same way: the
listener never stops while the producer runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from fakeai.services.backoff import RETRYABLE, Backoff, raise_if_cancelling
from fakeai.streams import Keys
from fakeai.streams.log import Link, Reader, is_redirect, pack_command
from fakeai.wire import CancelSignal, decode_cancel

__all__ = ["CancelListener"]

logger = logging.getLogger(__name__)

_FIELD = b"c"
"""The field of a cancel entry that holds the ``CancelSignal`` (:mod:`fakeai.wire.messages`)."""


class CancelListener:
    """Calls ``on_cancel(signal)`` for every signal appended after the listener started."""

    def __init__(
        self,
        link: Link,
        keys: Keys,
        on_cancel: Callable[[CancelSignal], None],
        *,
        block_ms: int = 2000,
        count: int = 100,
    ) -> None:
        self._link = link
        self._key = keys.cancels().encode()
        self._on_cancel = on_cancel
        self._block_ms = block_ms
        self._count = count
        self.last_id: bytes | None = None
        """The id after which the next read starts (None until resolved)."""
        self.ready = asyncio.Event()
        """Set once the start id is resolved: signals appended from then on are seen."""

    async def run(self) -> None:
        """Listen until cancelled."""
        reader: Reader | None = None
        backoff = Backoff()
        failed: set[type[Exception]] = set()
        try:
            while True:
                raise_if_cancelling()
                try:
                    if reader is None:
                        reader = await self._link.reader(self._key)
                    if self.last_id is None:
                        self.last_id = await self._resolve_start(reader)
                        self.ready.set()
                    reply = await reader.call(
                        pack_command(
                            b"XREAD",
                            b"COUNT",
                            b"%d" % self._count,
                            b"BLOCK",
                            b"%d" % self._block_ms,
                            b"STREAMS",
                            self._key,
                            self.last_id,
                        )
                    )
                except Exception as e:
                    if reader is not None:
                        await reader.close()
                        reader = None
                    if isinstance(e, RETRYABLE) or is_redirect(e):
                        if backoff.failures == 0:
                            logger.warning("cancel listener: Redis unavailable (%s); retrying", e)
                    elif type(e) not in failed:  # a bug or a broken key: say so, once per kind
                        failed.add(type(e))
                        logger.exception("cancel listener: unexpected failure; retrying")
                    await backoff.sleep()
                    with contextlib.suppress(Exception):
                        await self._link.refresh()
                    continue
                backoff.reset()
                for raw_id, fields in _entries(reply):
                    self.last_id = raw_id
                    self._dispatch(fields)
        finally:
            if reader is not None:
                await reader.close()

    async def _resolve_start(self, reader: Reader) -> bytes:
        rows = await reader.call(pack_command(b"XREVRANGE", self._key, b"+", b"-", b"COUNT", b"1"))
        return bytes(rows[0][0]) if rows else b"0-0"

    def _dispatch(self, fields: list[bytes]) -> None:
        raw = next(
            (fields[i + 1] for i in range(0, len(fields) - 1, 2) if fields[i] == _FIELD), None
        )
        if raw is None:
            logger.warning("cancel listener: entry without field 'c' ignored")
            return
        try:
            signal = decode_cancel(raw)
        except msgspec.DecodeError as e:
            logger.warning("cancel listener: undecodable signal ignored (%s)", e)
            return
        self._on_cancel(signal)


def _entries(reply: Any) -> list[tuple[bytes, list[bytes]]]:
    """``(id, flat fields)`` of a raw XREAD reply of one stream: ``[[key, entries]]`` in RESP2,
    ``{key: entries}`` in RESP3, None when the block timed out."""
    if not reply:
        return []
    streams = reply.values() if isinstance(reply, dict) else (s[1] for s in reply)
    return [(raw_id, fields) for entries in streams for raw_id, fields in entries]
