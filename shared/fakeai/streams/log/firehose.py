"""The firehose entry format: the one packer of its batches and the one reader of its fields.

A firehose partition (``Keys.events(p)``) entry has one field:

``b``  a batch: every event one producer flush wrote for streams of that partition, as a JSON
       array of ``FirehoseStream`` (array-like, :mod:`fakeai.wire.messages`):
       ``[[stream_id, model, accepted_at_us, created_ms, [[seq, kind, emitted_at_us, tokens,
       data, error_code, stats], ...]], ...]``, the events of one stream in seq order (trailing
       default fields may be left out). ``stats`` (a ``RequestStats``: generation start,
       prompt tokens, ``n``, ``max_tokens``) is on terminal events only; entries written
       before it existed lack it and still read. One entry carries the chunks of many
       streams, so the firehose costs one XADD per flush and partition, not one per chunk.
``f``  one ``FirehoseEvent`` (the format before batches; still read).

The JSON is assembled from parts here, byte for byte what msgspec would encode for the structs
(tested), because the producer builds one event per chunk: a stream's head is encoded once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from fakeai.streams.log.entry import pack_command
from fakeai.wire import FirehoseEvent, decode_firehose, decode_firehose_batch, encode
from fakeai.wire.messages import RequestStats

__all__ = [
    "F_BATCH",
    "F_EVENT",
    "batch_entry",
    "event",
    "firehose_events",
    "pack_batch",
    "pack_trim",
    "payload_field",
    "stream_head",
]

F_BATCH: Final = b"b"
F_EVENT: Final = b"f"
_FIELDS = (F_BATCH, F_EVENT)


def stream_head(stream_id: str, model: str, accepted_at_us: int, created_ms: int) -> bytes:
    """``[stream_id, model, accepted_at_us, created_ms, [``: a stream's part of a batch."""
    return b"[%s,%s,%d,%d,[" % (encode(stream_id), encode(model), accepted_at_us, created_ms)


def event(
    seq: int,
    kind: bytes,
    emitted_at_us: int,
    tokens: int,
    data: bytes,
    error_code: str | None = None,
    stats: RequestStats | None = None,
) -> bytes:
    """One ``FirehoseItem``: ``[seq, kind, emitted_at_us, tokens, data(, error_code(, stats))]``.

    ``kind`` is a one-letter ``Kind`` (no escaping needed); ``data`` is JSON. ``stats`` goes on
    terminal events only (the per-request histograms' figures).
    """
    if stats is not None:
        return b'[%d,"%s",%d,%d,%s,%s,%s]' % (
            seq, kind, emitted_at_us, tokens, data, encode(error_code), encode(stats),
        )  # fmt: skip
    if error_code is None:
        return b'[%d,"%s",%d,%d,%s]' % (seq, kind, emitted_at_us, tokens, data)
    return b'[%d,"%s",%d,%d,%s,%s]' % (
        seq,
        kind,
        emitted_at_us,
        tokens,
        data,
        encode(error_code),
    )


def batch_entry(streams: Iterable[tuple[bytes, list[bytes]]]) -> bytes:
    """The ``b`` value: ``(stream head, [events in seq order])`` per stream."""
    return b"[%s]" % b",".join(b"%s%s]]" % (head, b",".join(evs)) for head, evs in streams)


def pack_batch(key: bytes, entry: bytes) -> bytes:
    """``XADD <partition> * b <entry>`` in the Redis protocol (auto id: at-least-once)."""
    return pack_command(b"XADD", key, b"*", F_BATCH, entry)


def pack_trim(key: bytes, min_id_ms: int) -> bytes:
    """``XTRIM <partition> MINID ~ <min_id_ms>`` (https://redis.io/docs/latest/commands/xtrim/)."""
    return pack_command(b"XTRIM", key, b"MINID", b"~", b"%d" % min_id_ms)


def payload_field(fields: Any) -> tuple[bytes | None, bytes]:
    """``(name, value)`` of an entry's ``b`` or ``f`` field, from a dict (redis-py's parsed
    reply) or a raw reply's flat field list; ``(None, b"")`` when it has neither."""
    if type(fields) is list:
        if len(fields) == 2 and fields[0] in _FIELDS:  # what producers write: one field
            return fields[0], fields[1]
        for i in range(0, len(fields) - 1, 2):
            if fields[i] in _FIELDS:
                return fields[i], fields[i + 1]
        return None, b""
    if isinstance(fields, dict):
        for name in _FIELDS:
            value = fields.get(name)
            if value is not None:
                return name, value
    return None, b""


def firehose_events(fields: Any) -> list[FirehoseEvent]:
    """Every event of one firehose entry (``b`` or ``f``, fields as a dict or a flat list), in
    order, as stand-alone :class:`~fakeai.wire.FirehoseEvent` objects (for observers).

    Raises ``KeyError`` when the entry has neither field, ``msgspec.DecodeError`` /
    ``msgspec.ValidationError`` when it is malformed.
    """
    name, value = payload_field(fields)
    if name == F_BATCH:
        return [ev for s in decode_firehose_batch(value) for ev in s.expand()]
    if name == F_EVENT:
        return [decode_firehose(value)]
    raise KeyError("a firehose entry without a 'b' or 'f' field")
