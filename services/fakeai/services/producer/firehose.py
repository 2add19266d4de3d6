"""The firehose side of a writer flush: one batch entry per partition, not one per chunk.

A stream's writes carry their firehose events: each a :class:`StreamHead` (built once per
stream by :mod:`.records`: the partition key, its cluster slot, and the stream's part of a
batch, ``fakeai.streams.log.firehose.stream_head``) and the event's bytes
(``fakeai.streams.log.firehose.event``). :class:`FirehoseBatch` groups the events of one flush
by partition, then by stream (in put order, so a stream's events stay in seq order), and
:meth:`Firehose.groups` turns each partition's group into ONE ``XADD <partition> * b <batch>``
(the batch format is owned by :mod:`fakeai.streams.log.firehose`; nothing here spells it).
A flush that carries chunks of a hundred streams thus costs Redis a handful of XADDs instead of
one per chunk, and the metrics consumer decodes one entry for all of them.

Partitions are trimmed by age (``XTRIM ... MINID ~ <now - retention>``,
https://redis.io/docs/latest/commands/xtrim/) at most once per second each
(:class:`FirehoseTrims`), in the flush that next writes to them. A partition's XADD and XTRIM
name one key, so they form one command group of that key's slot.
"""

from __future__ import annotations

import time

import msgspec

from fakeai.streams.log import Group
from fakeai.streams.log import firehose as wire

__all__ = ["Firehose", "FirehoseBatch", "FirehoseTrims", "StreamHead"]


class StreamHead(msgspec.Struct, frozen=True, gc=False):
    """What every firehose event of one stream shares (built once per stream)."""

    key: bytes
    """The stream's firehose partition (``Keys.events_for``)."""
    slot: int
    """The partition key's cluster slot (0 on a single server)."""
    head: bytes
    """``fakeai.streams.log.firehose.stream_head`` of the stream."""


class FirehoseTrims:
    """Decides when a firehose partition is due for ``XTRIM MINID ~`` (one per process).

    Trimming once per second per partition bounds a partition to the retention plus a second
    of entries, and takes the trim arguments off every XADD.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        self._interval_us = int(interval_s * 1_000_000)
        self._next_us: dict[bytes, int] = {}

    def due(self, key: bytes, t_us: int) -> bool:
        """True (and the next trim scheduled) if ``key`` should be trimmed now."""
        if t_us < self._next_us.get(key, 0):
            return False
        self._next_us[key] = t_us + self._interval_us
        return True


class _Partition:
    __slots__ = ("slot", "streams")

    def __init__(self, slot: int, head: bytes, event: bytes) -> None:
        self.slot = slot
        self.streams: dict[bytes, list[bytes]] = {head: [event]}


class FirehoseBatch:
    """The firehose events of one flush: partition -> stream head -> events, in put order."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: dict[bytes, _Partition] = {}

    def add(self, stream: StreamHead, event: bytes) -> None:
        part = self.parts.get(stream.key)
        if part is None:
            self.parts[stream.key] = _Partition(stream.slot, stream.head, event)
            return
        events = part.streams.get(stream.head)
        if events is None:
            part.streams[stream.head] = [event]
        else:
            events.append(event)

    def __bool__(self) -> bool:
        return bool(self.parts)


class Firehose:
    """Turns a :class:`FirehoseBatch` into command groups (one per process, owned by the
    writer)."""

    def __init__(self, retention_s: int = 3600, trims: FirehoseTrims | None = None) -> None:
        if retention_s < 1:
            raise ValueError(f"firehose retention must be >= 1 s, got {retention_s!r}")
        self.retention_s = retention_s
        self.trims = trims or FirehoseTrims()

    def groups(self, batch: FirehoseBatch, t_us: int | None = None) -> list[Group]:
        """One group per partition: its batch XADD, and its XTRIM when one is due."""
        if t_us is None:
            t_us = time.time_ns() // 1000
        out: list[Group] = []
        for key, part in batch.parts.items():
            packed = wire.pack_batch(key, wire.batch_entry(part.streams.items()))
            if self.trims.due(key, t_us):
                minid_ms = t_us // 1000 - self.retention_s * 1000
                out.append((part.slot, packed + wire.pack_trim(key, minid_ms), 2))
            else:
                out.append((part.slot, packed, 1))
        return out
