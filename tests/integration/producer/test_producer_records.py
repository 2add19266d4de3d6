"""A stream's records: the commands each item carries (decoded back from the protocol), the
slots they are tagged with, and firehose events of one flush as one batch entry per partition;
then the same items written to a real Redis and read back with the wire formats."""

from __future__ import annotations

import time

import msgspec
import pytest
import redis.asyncio as aredis
from tests.conftest import BOTH
from tests.integration.producer.producerkit import commands, stream_records

from fakeai.services.producer import records as records_module
from fakeai.services.producer.firehose import Firehose, FirehoseBatch, FirehoseTrims
from fakeai.services.producer.records import Outcome, StreamRecords, request_params
from fakeai.services.producer.writer import Cmds, LogWriter, WriteFailed
from fakeai.streams import PRODUCERS_GROUP, Keys
from fakeai.streams.client import RedisClient
from fakeai.streams.log import Kind, Link, pack_command
from fakeai.streams.log.firehose import batch_entry, firehose_events
from fakeai.streams.meta import F
from fakeai.wire import (
    FirehoseItem,
    FirehoseStream,
    decode_firehose_batch,
    encode,
)
from fakeai.wire.messages import RequestStats

# A model name that needs JSON escaping, to prove the event is not assembled naively.
MODEL = 'odd "model" \\ é'
ACCEPTED_US = 1_700_000_000_500_000
CREATED_MS = 1_700_000_000_123


def _records(
    keys: Keys, link: Link, sid: str = "chatcmpl-00ff00ff00ff00ff00ff00ff"
) -> StreamRecords:
    return stream_records(keys, link, sid=sid, model=MODEL, created_ms=CREATED_MS)


def _group(rec: StreamRecords, *items: FirehoseItem) -> FirehoseStream:
    return FirehoseStream(
        stream_id=rec.request.stream_id,
        model=MODEL,
        accepted_at_us=ACCEPTED_US,
        created_ms=CREATED_MS,
        events=list(items),
    )


@pytest.fixture
def link() -> Link:
    """A link of an unconnected single-server client: slots are all 0, no I/O."""
    return Link(aredis.Redis())


def test_data_entries_carry_the_log_entry_and_the_msgspec_firehose_event(
    keys: Keys, link: Link, monkeypatch: pytest.MonkeyPatch
) -> None:
    t_us = 1_700_000_001_234_567
    monkeypatch.setattr(records_module, "now_us", lambda: t_us)
    rec = _records(keys, link)
    data = b'{"choices":[{"delta":{"content":"hi"}}]}'
    sid = rec.request.stream_id
    for seq, kind, tokens in ((1, Kind.CHUNK, 1), (2, Kind.CHUNK, 2), (3, Kind.RESPONSE, 0)):
        item = rec.entry(seq, kind, data, tokens)
        log_key, entry_id = keys.chunks(sid).encode(), rec.entry_id(seq).encode()
        expected = [[b"XADD", log_key, entry_id, b"k", kind, b"d", data, b"t", b"%d" % t_us]]
        if seq == 1:
            expected.append(
                [b"HSET", keys.meta(sid).encode(), F.FIRST_CHUNK_AT.encode(), b"%r" % (t_us / 1e6)]
            )
        assert commands(item.packed) == expected
        assert item.n == len(expected)
        assert item.stream.key == keys.events_for(sid, 4).encode()
        event = FirehoseItem(
            seq=seq, kind=kind.decode(), emitted_at_us=t_us, tokens=tokens, data=msgspec.Raw(data)
        )
        # head + event + "]]" is the stream's group of a batch entry, as msgspec writes it
        assert item.stream.head + item.event + b"]]" == encode(_group(rec, event)).replace(
            b",null,null]]", b"]]"
        )


def test_the_terminal_event_carries_the_request_stats_as_msgspec_writes_them(
    keys: Keys, link: Link, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The terminal firehose event ends with the request's figures: when generation started
    (the records' making, once ``started``), prompt tokens, ``n`` and ``max_tokens``."""
    times = iter([1_700_000_000_600_000, 1_700_000_002_000_000])
    monkeypatch.setattr(records_module, "now_us", lambda: next(times))
    body = {"n": 2, "max_completion_tokens": 9, "max_tokens": 5}
    rec = stream_records(
        keys, link, sid="chatcmpl-ab", model=MODEL, created_ms=CREATED_MS, body=body
    )
    started = commands(rec.started("p1").packed)[0]
    assert started[started.index(F.STARTED_AT.encode()) + 1] == b"%r" % 1_700_000_000.6
    final = rec.terminal(
        3, 2, Outcome(error_code="cancelled", completion_tokens=2, prompt_tokens=7)
    )
    (item,) = decode_firehose_batch(batch_entry([(final.stream.head, [final.event])])).pop().events
    stats = RequestStats(started_at_us=1_700_000_000_600_000, prompt_tokens=7, n=2, max_tokens=9)
    assert item.stats == stats
    assert (item.kind, item.error_code, item.tokens) == ("e", "cancelled", 2)
    assert batch_entry([(final.stream.head, [final.event])]) == encode([_group(rec, item)])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, (1, None)),
        ({"n": 3, "max_tokens": 10}, (3, 10)),
        ({"max_output_tokens": 64}, (1, 64)),
        ({"n": True, "max_tokens": "10"}, (1, None)),  # wrong types: as if unset
    ],
)
def test_request_params(body: dict[str, object], expected: tuple[int, int | None]) -> None:
    assert request_params(body) == expected


def test_a_request_ended_before_it_started_has_no_start(keys: Keys, link: Link) -> None:
    final = _records(keys, link).terminal(1, 0, Outcome(error_code="invalid_request"))
    (item,) = decode_firehose_batch(batch_entry([(final.stream.head, [final.event])])).pop().events
    assert item.stats == RequestStats(started_at_us=0, prompt_tokens=0, n=1, max_tokens=None)


def test_terminal_item_ends_the_stream_and_acks_behind_the_firehose(keys: Keys, link: Link) -> None:
    rec = _records(keys, link)
    sid = rec.request.stream_id
    final = rec.terminal(4, 3, Outcome(finish_reason="stop", completion_tokens=3))
    names = [(c[0], c[1]) for c in commands(final.cmds.packed)]
    chunks, meta = keys.chunks(sid).encode(), keys.meta(sid).encode()
    assert names == [(b"XADD", chunks), (b"HSET", meta), (b"EXPIRE", chunks), (b"EXPIRE", meta)]
    assert final.cmds.n == 4
    assert commands(final.active.packed) == [[b"ZREM", keys.active().encode(), sid.encode()]]
    assert commands(final.after.packed) == [
        [b"XACK", rec.request_key.encode(), PRODUCERS_GROUP.encode(), b"1-1"]
    ]
    forever = _records(keys, link)
    forever.retention_s = 0
    persisted = commands(forever.terminal(1, 0, Outcome(error_code="cancelled")).cmds.packed)
    assert [c[0] for c in persisted[2:]] == [b"PERSIST", b"PERSIST"]


@BOTH
async def test_items_are_tagged_with_the_slots_of_their_keys(rc: RedisClient, keys: Keys) -> None:
    link = Link(rc)
    rec = _records(keys, link)
    sid = rec.request.stream_id
    item = rec.entry(1, Kind.CHUNK, b"{}", 1)
    final = rec.terminal(2, 1, Outcome())
    slot = link.slot(keys.chunks(sid))
    assert slot == link.slot(keys.meta(sid))  # one hash tag
    assert item.slot == final.cmds.slot == rec.started("p").slot == slot
    assert item.stream.slot == link.slot(keys.events_for(sid, 4))
    assert final.active.slot == link.slot(keys.active())
    assert final.after.slot == link.slot(rec.request_key)
    if link.cluster:  # the tags spread these keys over slots
        assert len({slot, item.stream.slot, final.active.slot, final.after.slot}) > 1


def test_one_batch_entry_per_partition_groups_events_by_stream(keys: Keys, link: Link) -> None:
    a, b = _records(keys, link, "chatcmpl-a"), _records(keys, link, "chatcmpl-b")
    batch = FirehoseBatch()
    for rec, seq in ((a, 1), (b, 1), (a, 2), (b, 2), (a, 3)):
        item = rec.entry(seq, Kind.CHUNK, b'{"i":%d}' % seq, 1)
        batch.add(item.stream, item.event)
    firehose = Firehose(retention_s=60)
    groups = firehose.groups(batch, t_us=10_000_000_000)
    partitions = {rec.entry(1, Kind.CHUNK, b"{}", 1).stream.key for rec in (a, b)}
    assert len(groups) == len(partitions)
    sent = [c for _, packed, _ in groups for c in commands(packed)]
    assert sum(n for _, _, n in groups) == len(sent) == 2 * len(partitions)  # + one trim each
    xadds = [c for c in sent if c[0] == b"XADD"]
    assert {c[1] for c in xadds} == partitions
    assert {c[1] for c in sent if c[0] == b"XTRIM"} == partitions
    by_sid = {
        g.stream_id: [e.seq for e in g.events] for c in xadds for g in decode_firehose_batch(c[4])
    }
    assert by_sid == {"chatcmpl-a": [1, 2, 3], "chatcmpl-b": [1, 2]}
    # the next flush within the trim interval does not trim again
    assert sum(n for _, _, n in firehose.groups(batch, t_us=10_000_500_000)) == len(partitions)


def test_trims_are_due_once_per_interval_per_partition() -> None:
    trims = FirehoseTrims(interval_s=1.0)
    assert trims.due(b"p0", 10_000_000)
    assert not trims.due(b"p0", 10_999_999)
    assert trims.due(b"p1", 10_999_999)
    assert trims.due(b"p0", 11_000_000)
    assert not trims.due(b"p0", 11_000_001)


@pytest.mark.redis
@BOTH
async def test_entries_read_back_with_the_wire_formats(rc: RedisClient, keys: Keys) -> None:
    link = Link(rc)
    rec = _records(keys, link)
    writer = LogWriter(link)
    writer.start()
    data = b'{"x":"\\u00e9"}'
    before = time.time_ns() // 1000
    for seq in (1, 2):
        assert writer.put_nowait(rec.entry(seq, Kind.CHUNK, data, seq))
    await writer.write(rec.entry(2, Kind.CHUNK, data, 2))  # re-sent: the duplicate is ignored
    await writer.close()
    sid = rec.request.stream_id
    log = await rc.xrange(keys.chunks(sid))
    assert [i for i, _ in log] == [b"1700000000123-1", b"1700000000123-2"]
    assert [(f[b"k"], f[b"d"]) for _, f in log] == [(Kind.CHUNK, data)] * 2
    times = [int(f[b"t"]) for _, f in log]
    assert all(t >= before for t in times)
    rows = await rc.xrange(keys.events_for(sid, 4))
    assert all(set(f) == {b"b"} for _, f in rows)
    events = [ev for _, f in rows for ev in firehose_events(f)]
    # the re-sent entry's firehose event is a duplicate (at-least-once), with its own time
    assert [(e.entry_id, e.emitted_at_us, e.tokens, e.payload) for e in events[:2]] == [
        (rec.entry_id(s), t, s, data) for s, t in zip((1, 2), times, strict=True)
    ]
    assert len(events) == 3
    assert {(e.stream_id, e.model, e.accepted_at_us) for e in events} == {(sid, MODEL, ACCEPTED_US)}
    first = await rc.hget(keys.meta(sid), F.FIRST_CHUNK_AT)
    assert first == repr(times[0] / 1e6).encode()


@pytest.mark.redis
@BOTH
async def test_terminal_event_rides_the_batch_with_its_payload_and_the_request_is_acked(
    rc: RedisClient, keys: Keys
) -> None:
    link = Link(rc)
    rec = _records(keys, link)
    await rc.xgroup_create(rec.request_key, PRODUCERS_GROUP, id="0", mkstream=True)
    rec.msg_id = await rc.xadd(rec.request_key, {"r": b"x"})
    await rc.xreadgroup(PRODUCERS_GROUP, "p", {rec.request_key: ">"})
    await rc.zadd(keys.active(), {rec.request.stream_id: 1})
    writer = LogWriter(link)
    writer.start()
    writer.put_nowait(rec.entry(1, Kind.CHUNK, b"{}", 1))
    outcome = Outcome(finish_reason="length", completion_tokens=1, prompt_tokens=7)
    await writer.write(rec.terminal(2, 1, outcome))
    await writer.close()
    assert int((await rc.xpending(rec.request_key, PRODUCERS_GROUP))["pending"]) == 0
    assert await rc.zscore(keys.active(), rec.request.stream_id) is None
    assert 0 < await rc.ttl(keys.chunks(rec.request.stream_id)) <= 60
    rows = await rc.xrange(keys.events_for(rec.request.stream_id, 4))
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
async def test_packed_commands_fail_their_write_on_errors(rc: RedisClient, keys: Keys) -> None:
    link = Link(rc)
    writer = LogWriter(link)
    writer.start()
    bad, ok = keys.meta("wrongtype"), keys.chunks("ok")
    await rc.set(bad, "x")
    with pytest.raises(WriteFailed, match="WRONGTYPE"):
        await writer.write(
            Cmds(link.slot(bad), pack_command(b"XADD", bad.encode(), b"*", b"f", b"1"), 1)
        )
    await writer.write(Cmds(link.slot(ok), pack_command(b"XADD", ok.encode(), b"*", b"f", b"1"), 1))
    await writer.close()
    assert await rc.xlen(ok) == 1
