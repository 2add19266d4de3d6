"""The firehose side of a writer flush: one batch entry per partition, not one per chunk.

A stream's write carries its firehose event as an :data:`Event`, three byte strings built by
:mod:`.records`: the partition key, the stream's *head* (``[stream_id, model, accepted_at_us,
created_ms, [`` in JSON, encoded once per stream) and the event itself (``[seq, kind,
emitted_at_us, tokens, data]``). :class:`FirehoseBatch` groups the events of one flush by
partition, then by stream (in put order, so a stream's events stay in seq order), and
:meth:`Firehose.commands` turns each partition's group into ONE ``XADD <partition> * b
<batch>``: the ``b`` entry format of :mod:`fakeai.wire.messages`. A flush that carries chunks
of a hundred streams thus costs Redis a handful of XADDs instead of one per chunk, and the
metrics consumer decodes one entry for all of them.

Partitions are trimmed by age (``XTRIM ... MINID ~ <now - retention>``,
https://redis.io/docs/latest/commands/xtrim/) at most once per second each
(:class:`FirehoseTrims`), in the flush that next writes to them.
"""

from __future__ import annotations

import time
from typing import TypeAlias

from fakeai.wire.resp import pack

__all__ = ["Event", "Firehose", "FirehoseBatch", "FirehoseTrims"]

Event: TypeAlias = tuple[bytes, bytes, bytes]
"""``(partition key, stream head, event)``: one firehose event, ready to be batched."""


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


class FirehoseBatch:
    """The firehose events of one flush: partition key -> stream head -> events, in order."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: dict[bytes, dict[bytes, list[bytes]]] = {}

    def add(self, key: bytes, head: bytes, event: bytes) -> None:
        streams = self.parts.get(key)
        if streams is None:
            self.parts[key] = {head: [event]}
            return
        events = streams.get(head)
        if events is None:
            streams[head] = [event]
        else:
            events.append(event)

    def __bool__(self) -> bool:
        return bool(self.parts)


class Firehose:
    """Turns a :class:`FirehoseBatch` into commands (one per process, owned by the writer)."""

    def __init__(self, retention_s: int = 3600, trims: FirehoseTrims | None = None) -> None:
        if retention_s < 1:
            raise ValueError(f"firehose retention must be >= 1 s, got {retention_s!r}")
        self.retention_s = retention_s
        self.trims = trims or FirehoseTrims()

    def commands(self, batch: FirehoseBatch, t_us: int | None = None) -> tuple[list[bytes], int]:
        """``(RESP parts, number of commands)``: an XADD per partition, and the trims due."""
        if t_us is None:
            t_us = time.time_ns() // 1000
        parts: list[bytes] = []
        n = 0
        for key, streams in batch.parts.items():
            entry = b"[%s]" % b",".join(
                b"%s%s]]" % (head, b",".join(events)) for head, events in streams.items()
            )
            parts.append(pack(b"XADD", key, b"*", b"b", entry))
            n += 1
            if self.trims.due(key, t_us):
                minid = t_us // 1000 - self.retention_s * 1000
                parts.append(pack(b"XTRIM", key, b"MINID", b"~", b"%d" % minid))
                n += 1
        return parts, n
