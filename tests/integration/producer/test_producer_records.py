"""Data entries built directly in the Redis protocol equal what redis-py and msgspec produce;
firehose events of one flush become one batch entry per partition."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest
import redis.asyncio as aredis

from fakeai.services.producer import records as records_module
from fakeai.services.producer.firehose import Firehose, FirehoseBatch, FirehoseTrims
from fakeai.services.producer.records import Outcome, StreamRecords
from fakeai.services.producer.writer import LogWriter
from fakeai.streams import PRODUCERS_GROUP, Keys
from fakeai.streams.meta import F
from fakeai.wire import (
    KIND_CHUNK,
    KIND_RESPONSE,
    FirehoseItem,
    FirehoseStream,
    GenerationRequest,
    decode_firehose_batch,
    encode,
    firehose_events,
)
from fakeai.wire.resp import pack

# A model name that needs JSON escaping, to prove the event is not assembled naively.
MODEL = 'odd "model" \\ é'
ACCEPTED_US = 1_700_000_000_500_000
CREATED_MS = 1_700_000_000_123


def _records(keys: Keys, sid: str = "chatcmpl-00ff00ff00ff00ff00ff00ff") -> StreamRecords:
    req = GenerationRequest(
        stream_id=sid,
        endpoint="chat",
        model=MODEL,
        created_ms=CREATED_MS,
        accepted_at=1_700_000_000.5,
        body={},
    )
    return StreamRecords(
        request=req, msg_id=b"1-1", keys=keys, firehose_partitions=4, retention_s=60
    )


def _group(rec: StreamRecords, *items: FirehoseItem) -> FirehoseStream:
    return FirehoseStream(
        stream_id=rec.request.stream_id,
        model=MODEL,
        accepted_at_us=ACCEPTED_US,
        created_ms=CREATED_MS,
        events=list(items),
    )


def test_packed_entry_equals_the_redis_py_commands_and_msgspec_event(
    keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    t_us = 1_700_000_001_234_567
    monkeypatch.setattr(records_module, "now_us", lambda: t_us)
    rec = _records(keys)
    data = b'{"choices":[{"delta":{"content":"hi"}}]}'
    conn = aredis.Connection()
    sid = rec.request.stream_id
    for seq, kind, tokens in ((1, KIND_CHUNK, 1), (2, KIND_CHUNK, 2), (3, KIND_RESPONSE, 0)):
        packed, commands, key, head, event = rec.entry(seq, kind, data, tokens)
        expected: list[tuple[Any, ...]] = [
            ("XADD", keys.chunks(sid), rec.entry_id(seq), "k", kind, "d", data, "t", t_us),
        ]
        if seq == 1:
            expected.append(("HSET", keys.meta(sid), F.FIRST_CHUNK_AT, t_us / 1e6))
        assert packed == b"".join(conn.pack_commands(expected))
        assert commands == len(expected)
        assert key == keys.events_for(sid, 4).encode()
        item = FirehoseItem(
            seq=seq, kind=kind.decode(), emitted_at_us=t_us, tokens=tokens, data=msgspec.Raw(data)
        )
        # head + events + "]]" is the stream's group of a batch entry, as msgspec writes it
        assert head + event + b"]]" == encode(_group(rec, item)).replace(b",null]]", b"]]")
        assert decode_firehose_batch(b"[" + head + event + b"]]]") == [_group(rec, item)]


def test_one_batch_entry_per_partition_groups_events_by_stream(keys: Keys) -> None:
    a, b = _records(keys, "chatcmpl-a"), _records(keys, "chatcmpl-b")
    batch = FirehoseBatch()
    for rec, seq in ((a, 1), (b, 1), (a, 2), (b, 2), (a, 3)):
        batch.add(*rec.entry(seq, KIND_CHUNK, b'{"i":%d}' % seq, 1)[2:])
    firehose = Firehose(retention_s=60)
    parts, n = firehose.commands(batch, t_us=10_000_000_000)
    keys_used = {rec.entry(1, KIND_CHUNK, b"{}", 1)[2] for rec in (a, b)}
    xadds = [p for p in parts if b"XADD" in p]
    assert len(xadds) == len(keys_used)
    assert n == len(parts) == 2 * len(keys_used)  # each partition also trimmed, once
    groups = []
    for p in xadds:
        payload = p.split(b"\r\n")[-2]
        groups += decode_firehose_batch(payload)
    by_sid = {g.stream_id: [e.seq for e in g.events] for g in groups}
    assert by_sid == {"chatcmpl-a": [1, 2, 3], "chatcmpl-b": [1, 2]}
    # the next flush within the trim interval does not trim again
    parts, n = firehose.commands(batch, t_us=10_000_500_000)
    assert n == len(keys_used)


def test_trims_are_due_once_per_interval_per_partition() -> None:
    trims = FirehoseTrims(interval_s=1.0)
    assert trims.due(b"p0", 10_000_000)
    assert not trims.due(b"p0", 10_999_999)
    assert trims.due(b"p1", 10_999_999)
    assert trims.due(b"p0", 11_000_000)
    assert not trims.due(b"p0", 11_000_001)


@pytest.mark.redis
async def test_entries_read_back_with_the_wire_formats(r: aredis.Redis, keys: Keys) -> None:
    rec = _records(keys)
    writer = LogWriter(r)
    writer.start()
    data = b'{"x":"\\u00e9"}'
    before = time.time_ns() // 1000
    for seq in (1, 2):
        assert writer.put_nowait(rec.entry(seq, KIND_CHUNK, data, seq))
    await writer.write(rec.entry(2, KIND_CHUNK, data, 2))  # re-sent: the duplicate is ignored
    await writer.close()
    sid = rec.request.stream_id
    log = await r.xrange(keys.chunks(sid))
    assert [i for i, _ in log] == [b"1700000000123-1", b"1700000000123-2"]
    assert [(f[b"k"], f[b"d"]) for _, f in log] == [(KIND_CHUNK, data)] * 2
    times = [int(f[b"t"]) for _, f in log]
    assert all(t >= before for t in times)
    rows = await r.xrange(keys.events_for(sid, 4))
    assert all(set(f) == {b"b"} for _, f in rows)
    events = [ev for _, f in rows for ev in firehose_events(f)]
    # the re-sent entry's firehose event is a duplicate (at-least-once), with its own time
    assert [(e.entry_id, e.emitted_at_us, e.tokens, e.payload) for e in events[:2]] == [
        (rec.entry_id(s), t, s, data) for s, t in zip((1, 2), times, strict=True)
    ]
    assert len(events) == 3
    assert {(e.stream_id, e.model, e.accepted_at_us) for e in events} == {(sid, MODEL, ACCEPTED_US)}
    first = await r.hget(keys.meta(sid), F.FIRST_CHUNK_AT)
    assert first == repr(times[0] / 1e6).encode()


@pytest.mark.redis
async def test_terminal_event_rides_the_batch_with_its_payload_and_the_request_is_acked(
    r: aredis.Redis, keys: Keys
) -> None:
    await r.xgroup_create(keys.requests(), PRODUCERS_GROUP, id="0", mkstream=True)
    msg_id = await r.xadd(keys.requests(), {"r": b"x"})
    await r.xreadgroup(PRODUCERS_GROUP, "p", {keys.requests(): ">"})
    rec = _records(keys)
    rec.msg_id = msg_id
    writer = LogWriter(r)
    writer.start()
    writer.put_nowait(rec.entry(1, KIND_CHUNK, b"{}", 1))
    outcome = Outcome(finish_reason="length", completion_tokens=1, prompt_tokens=7)
    await writer.write(rec.terminal(2, 1, outcome))
    await writer.close()
    assert int((await r.xpending(keys.requests(), PRODUCERS_GROUP))["pending"]) == 0
    rows = await r.xrange(keys.events_for(rec.request.stream_id, 4))
    events = [ev for _, f in rows for ev in firehose_events(f)]
    assert [(e.entry_id, e.kind) for e in events] == [
        (rec.entry_id(1), "c"),
        (rec.entry_id(2), "d"),
    ]
    done = msgspec.json.decode(events[1].payload or b"")
    assert done["finish_reason"] == "length"
    assert done["prompt_tokens"] == 7
    assert events[1].tokens == 1


@pytest.mark.redis
async def test_packed_commands_fail_their_write_on_errors(r: aredis.Redis, keys: Keys) -> None:
    from fakeai.services.producer.writer import WriteFailed

    writer = LogWriter(r)
    writer.start()
    await r.set(keys.meta("wrongtype"), "x")
    with pytest.raises(WriteFailed, match="WRONGTYPE"):
        await writer.write((pack(b"XADD", keys.meta("wrongtype").encode(), b"*", b"f", b"1"), 1))
    await writer.write((pack(b"XADD", keys.chunks("ok").encode(), b"*", b"f", b"1"), 1))
    await writer.close()
    assert await r.xlen(keys.chunks("ok")) == 1
