"""One read of the firehose, folded (pure, no I/O): what to commit, then what to ack.

:func:`collect` decodes the entries of one read (batches ``b`` and single events ``f``,
:mod:`fakeai.streams.log.firehose`), feeds them to the :class:`StreamTracker`, and returns a
:class:`Batch`: the streams that finished in it (each once, even when its terminal entry came
twice), the marker ids of the malformed entries, and the entry ids to acknowledge. A malformed
entry is logged and acked with the rest: it never blocks the group.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from fakeai.services.metrics.commit import Committed
from fakeai.services.metrics.tracker import FinishedStream, StreamTracker
from fakeai.streams.log.firehose import F_BATCH, F_EVENT, payload_field
from fakeai.wire import decode_firehose, decode_firehose_batch

__all__ = ["Batch", "collect"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Batch:
    """One read's work: what to commit, then what to ack."""

    acks: dict[str, list[Any]]
    """Entry ids per partition key."""
    finished: list[FinishedStream]
    invalid: list[str]
    """Marker ids of malformed entries (``invalid-<partition>-<entry id>``)."""
    entries: int
    events: int
    """Firehose events folded (a batch entry carries many)."""
    done: Committed
    """What the commits wrote so far (a retried flush adds to it)."""
    completed: bool = False
    """``finished`` was rebuilt from the logs (done once, not on every retry)."""


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def collect(
    items: Iterable[tuple[Any, list[Any]]],
    tracker: StreamTracker,
    partition_of: Mapping[str, int],
    fine_s: int,
) -> Batch:
    """Fold ``(partition key, [(id, fields), ...])`` items into ``tracker``; ``fields`` is a
    dict (redis-py's parsed replies) or the flat ``[name, value, ...]`` list of a raw reply."""
    acks: dict[str, list[Any]] = {}
    finished: dict[str, FinishedStream] = {}
    invalid: list[str] = []
    events = 0
    observe = tracker.observe
    observe_stream = tracker.observe_stream
    for raw_key, entries in items:
        key = _s(raw_key)
        ids = acks.setdefault(key, [])
        for entry in entries:
            eid, fields = entry[0], entry[1]
            ids.append(eid)
            name, raw = payload_field(fields)
            try:
                if name == F_BATCH:
                    for group in decode_firehose_batch(raw):
                        events += len(group.events)
                        f = observe_stream(group)
                        if f is not None:
                            finished.setdefault(f.stream_id, f)
                    continue
                if name != F_EVENT:
                    raise ValueError("no 'b' or 'f' field")
                ev = decode_firehose(raw)
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
                invalid.append(f"invalid-{partition_of.get(key, key)}-{_s(eid)}")
                logger.warning("invalid firehose entry %s %s: %s", key, _s(eid), e)
                continue
            events += 1
            f = observe(ev)
            if f is not None:
                finished.setdefault(f.stream_id, f)
    return Batch(
        acks=acks,
        finished=list(finished.values()),
        invalid=invalid,
        entries=sum(len(v) for v in acks.values()),
        events=events,
        done=Committed(fine_s),
    )
