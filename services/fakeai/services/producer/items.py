"""What the write coalescer (:mod:`.writer`) takes: items of commands already in the Redis
protocol, each tagged with the cluster slot of its keys; and how a refusal is reported."""

from __future__ import annotations

from typing import TypeAlias

import msgspec
from redis.exceptions import OutOfMemoryError, ResponseError

from fakeai.services.producer.firehose import StreamHead

__all__ = ["Cmds", "Final", "Item", "Logged", "WriteFailed", "is_oom"]


class Cmds(msgspec.Struct, frozen=True, gc=False):
    """``n`` commands of one slot, in the Redis protocol."""

    slot: int
    packed: bytes
    n: int


class Logged(msgspec.Struct, frozen=True, gc=False):
    """A data entry: its commands (the stream's slot) and its firehose event."""

    slot: int
    packed: bytes
    n: int
    stream: StreamHead
    event: bytes


class Final(msgspec.Struct, frozen=True, gc=False):
    """A stream's end: ``cmds`` and ``active``, its firehose ``event``, then ``after``
    (behind the firehose)."""

    cmds: Cmds
    """The terminal entry, the meta totals, EXPIRE or PERSIST (the stream's slot)."""
    active: Cmds
    """ZREM from the active set (its own slot)."""
    stream: StreamHead
    event: bytes
    after: Cmds
    """The request's XACK."""


Item: TypeAlias = Cmds | Logged | Final
"""What :meth:`LogWriter.put` takes."""


class WriteFailed(Exception):
    """Redis rejected a command of an item with an error other than a duplicate entry id."""

    def __init__(self, message: str, *, oom: bool = False) -> None:
        super().__init__(message)
        self.oom = oom
        """Redis refused it for lack of memory (it may take it once memory is freed)."""


def is_oom(reply: object) -> bool:
    """Redis's refusal of a write when ``maxmemory`` is reached with ``noeviction``
    ("OOM command not allowed when used memory > 'maxmemory'"; redis-py's
    ``OutOfMemoryError``, which drops the "OOM" from the message)."""
    return isinstance(reply, OutOfMemoryError) or (
        isinstance(reply, ResponseError) and str(reply).startswith("OOM")
    )
