"""A batch of ordinary commands, packed as they are added, for :meth:`Link.execute
<fakeai.streams.log.link.Link.execute>`: the few redis-py pipeline methods that per-request
writes use (``hset``, ``expire``, ``zadd``, ``xadd``, ``set``), with redis-py's argument
encoding, at a fraction of a redis-py pipeline's cost (no per-command callbacks, one read of
every reply).

A batch runs either as one MULTI/EXEC (:meth:`Batch.transaction`, a single server: all or
nothing) or as one group per command (:meth:`Batch.groups`, a cluster: each command routed to
the node of its key's slot, the nodes concurrently, the commands of one slot in order).
:func:`raise_first_error` turns the replies into the first error they hold, as redis-py's
pipeline raises it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from redis.exceptions import ResponseError

from fakeai.streams.log.entry import pack_command
from fakeai.streams.log.link import Group

__all__ = ["Batch", "arg", "pack_hset", "raise_first_error"]

Value = str | bytes | int | float


def arg(value: Value) -> bytes:
    """An argument as redis-py encodes it: str as UTF-8, floats with ``repr``."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, float):
        return repr(value).encode()
    return b"%d" % value


def pack_hset(key: str | bytes, mapping: Mapping[str, Value]) -> bytes:
    """``HSET key name value ...`` packed, values encoded by :func:`arg`."""
    args: list[bytes] = [b"HSET", arg(key)]
    for name, value in mapping.items():
        args += (name.encode(), arg(value))
    return pack_command(*args)


class Batch:
    """Commands packed in the order they are added, each with the slot of its key."""

    __slots__ = ("_commands", "_slot")

    def __init__(self, slot: Callable[[str | bytes], int]) -> None:
        self._slot = slot
        self._commands: list[tuple[int, bytes]] = []

    def __len__(self) -> int:
        return len(self._commands)

    def _add(self, key: str | bytes, *args: Value) -> None:
        self._commands.append((self._slot(key), pack_command(*map(arg, args))))

    def hset(self, key: str, mapping: Mapping[str, Value]) -> None:
        self._commands.append((self._slot(key), pack_hset(key, mapping)))

    def expire(self, key: str, seconds: int | float) -> None:
        self._add(key, b"EXPIRE", key, int(seconds))

    def zadd(self, key: str, mapping: Mapping[str, int | float]) -> None:
        args: list[Value] = [b"ZADD", key]
        for member, score in mapping.items():
            args += (score, member)
        self._add(key, *args)

    def xadd(
        self,
        key: str,
        fields: Mapping[str, Value],
        *,
        minid: int | str | None = None,
        approximate: bool = True,
    ) -> None:
        args: list[Value] = [b"XADD", key]
        if minid is not None:
            args += (b"MINID", b"~" if approximate else b"=", minid)
        args.append(b"*")
        for name, value in fields.items():
            args += (name, value)
        self._add(key, *args)

    def set(self, key: str, value: Value, *, ex: int | float | None = None) -> None:
        if ex is None:
            self._add(key, b"SET", key, value)
        else:
            self._add(key, b"SET", key, value, b"EX", int(ex))

    def transaction(self) -> list[Group]:
        """The whole batch as one MULTI/EXEC (a single server only: a MULTI spans one slot
        on a cluster). Its replies: ``OK``, one ``QUEUED`` per command, then EXEC's."""
        parts = [pack_command(b"MULTI"), *(packed for _, packed in self._commands)]
        parts.append(pack_command(b"EXEC"))
        return [(0, b"".join(parts), len(parts))]

    def groups(self) -> list[Group]:
        """One group per command, routed by its key's slot (a cluster)."""
        return [(slot, packed, 1) for slot, packed in self._commands]


def raise_first_error(replies: Sequence[Any]) -> None:
    """Raise the first error among ``replies`` (:meth:`Link.execute`'s), looking inside a
    transaction's EXEC reply too: a command refused when queued (``OOM``) comes before the
    ``EXECABORT`` it causes, as redis-py's pipeline reports it."""
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
        if isinstance(reply, list):
            for inner in reply:
                if isinstance(inner, ResponseError):
                    raise inner
