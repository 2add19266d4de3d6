"""Write streams the way the producer does: each entry to the stream's log and to the firehose.

The firehose gets one-event entries (field ``f``, the older format) or, with ``batched``,
batch entries (field ``b``) of up to ``per_entry`` events each, events grouped by stream
inside an entry, as a producer's flush writes them. Log entries and batches are packed by
:mod:`fakeai.streams.log` and sent through its :class:`~fakeai.streams.log.Link` (grouped per
slot, so this works on a single Redis and on a cluster alike).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import msgspec

from fakeai.streams import Keys, entry_id, parse_entry_id
from fakeai.streams.client import RedisClient
from fakeai.streams.log import Group, Link, pack_entry
from fakeai.streams.log.firehose import F_EVENT, pack_batch
from fakeai.wire.messages import (
    DonePayload,
    ErrorBody,
    ErrorPayload,
    FirehoseEvent,
    FirehoseItem,
    FirehoseStream,
    RequestStats,
    encode,
)


def stream_events(
    sid: str,
    model: str,
    *,
    accepted_us: int,
    chunk_us: Sequence[int],
    terminal_us: int,
    kind: str = "d",
    tokens: int | None = None,
    error_code: str | None = None,
    finish_reason: str = "stop",
    prompt_tokens: int = 0,
    chunk_tokens: Sequence[int] | None = None,
    stats: RequestStats | None = None,
) -> list[FirehoseEvent]:
    """The firehose events of one stream: chunks 1..k then the terminal entry (with ``stats``).

    Chunk i carries ``chunk_tokens[i]`` tokens (1 each by default); a chunk of 0 tokens is a
    Responses event without text (``response.created``), with a payload that says so."""
    created_ms = accepted_us // 1000
    counts = [1] * len(chunk_us) if chunk_tokens is None else list(chunk_tokens)
    out = []
    for i, (t, k) in enumerate(zip(chunk_us, counts, strict=True), start=1):
        data = (
            encode({"id": sid, "choices": [{"index": 0, "delta": {"content": f" t{i}"}}]})
            if k
            else encode({"type": "response.created", "sequence_number": i - 1})
        )
        out.append(
            FirehoseEvent(
                stream_id=sid, entry_id=entry_id(created_ms, i), kind="c", model=model,
                accepted_at_us=accepted_us, emitted_at_us=t, tokens=k, data=msgspec.Raw(data),
            )
        )  # fmt: skip
    total = sum(counts) if tokens is None else tokens
    payload = (
        encode(DonePayload(finish_reason=finish_reason, chunks=len(chunk_us),
                           completion_tokens=total, prompt_tokens=prompt_tokens))
        if kind == "d"
        else encode(ErrorPayload(error=ErrorBody(message="x", type="error", code=error_code)))
    )  # fmt: skip
    out.append(
        FirehoseEvent(
            stream_id=sid, entry_id=entry_id(created_ms, len(chunk_us) + 1), kind=kind,
            model=model, accepted_at_us=accepted_us, emitted_at_us=terminal_us, tokens=total,
            data=msgspec.Raw(payload), error_code=error_code, stats=stats,
        )
    )  # fmt: skip
    return out


async def publish(
    r: RedisClient,
    keys: Keys,
    partitions: int,
    events: Sequence[FirehoseEvent],
    *,
    log: bool = True,
    batched: bool = False,
    per_entry: int = 8,
) -> None:
    """XADD each event to its stream's log (id = entry id) and its firehose partition."""
    link = Link(r)
    groups: list[Group] = []
    by_partition: dict[str, list[FirehoseEvent]] = defaultdict(list)
    for ev in events:
        if log:
            key = keys.chunks(ev.stream_id)
            packed = pack_entry(key.encode(), ev.entry_id.encode(), ev.kind.encode(),
                                ev.payload or b"{}", ev.emitted_at_us)  # fmt: skip
            groups.append((link.slot(key), packed, 1))
        if batched:
            by_partition[keys.events_for(ev.stream_id, partitions)].append(ev)
    if groups:
        _raise_errors(await link.execute(groups))
    if not batched:
        # The older one-event format: one field ``f`` (no packer of its own: nothing writes it).
        pipe = r.pipeline(transaction=False)
        for ev in events:
            pipe.xadd(keys.events_for(ev.stream_id, partitions), {F_EVENT: encode(ev)})
        await pipe.execute()
        return
    groups = []
    for key, evs in by_partition.items():
        for lo in range(0, len(evs), per_entry):
            packed = pack_batch(key.encode(), batch_entry(evs[lo : lo + per_entry]))
            groups.append((link.slot(key), packed, 1))
    _raise_errors(await link.execute(groups))


def _raise_errors(replies: list[object]) -> None:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply


def batch_entry(events: Sequence[FirehoseEvent]) -> bytes:
    """The ``b`` field of one firehose entry holding ``events`` (grouped by stream, in order)."""
    groups: dict[str, FirehoseStream] = {}
    for ev in events:
        pos = parse_entry_id(ev.entry_id)
        assert pos is not None
        group = groups.get(ev.stream_id)
        if group is None:
            group = groups[ev.stream_id] = FirehoseStream(
                stream_id=ev.stream_id, model=ev.model, accepted_at_us=ev.accepted_at_us,
                created_ms=pos.ms, events=[],
            )  # fmt: skip
        group.events.append(
            FirehoseItem(seq=pos.seq, kind=ev.kind, emitted_at_us=ev.emitted_at_us,
                         tokens=ev.tokens, data=ev.data, error_code=ev.error_code,
                         stats=ev.stats)
        )  # fmt: skip
    return encode(list(groups.values()))
