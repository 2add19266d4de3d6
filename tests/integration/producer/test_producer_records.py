"""Data entries built directly in the Redis protocol equal what redis-py and msgspec produce."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest
import redis.asyncio as aredis

from fakeai.services.producer import records as records_module
from fakeai.services.producer.records import FirehoseTrims, StreamRecords, pack
from fakeai.services.producer.writer import LogWriter
from fakeai.streams import Keys
from fakeai.streams.meta import F
from fakeai.wire import KIND_CHUNK, KIND_RESPONSE, FirehoseEvent, GenerationRequest, encode

# A model name that needs JSON escaping, to prove the event is not assembled naively.
MODEL = 'odd "model" \\ é'


def _records(keys: Keys, *, trims: FirehoseTrims | None = None) -> StreamRecords:
    req = GenerationRequest(
        stream_id="chatcmpl-00ff00ff00ff00ff00ff00ff",
        endpoint="chat",
        model=MODEL,
        created_ms=1_700_000_000_123,
        accepted_at=1_700_000_000.5,
        body={},
    )
    return StreamRecords(
        request=req,
        msg_id=b"1-1",
        keys=keys,
        firehose_partitions=4,
        firehose_retention_s=60,
        retention_s=60,
        trims=trims or FirehoseTrims(),
    )


def _event(rec: StreamRecords, seq: int, kind: bytes, data: bytes, t_us: int, tokens: int) -> bytes:
    return encode(
        FirehoseEvent(
            stream_id=rec.request.stream_id,
            entry_id=rec.entry_id(seq),
            kind=kind.decode(),
            model=MODEL,
            accepted_at_us=1_700_000_000_500_000,
            emitted_at_us=t_us,
            tokens=tokens,
            data=msgspec.Raw(data),
        )
    )


def test_packed_entry_equals_the_redis_py_commands(
    keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    t_us = 1_700_000_001_234_567
    monkeypatch.setattr(records_module, "now_us", lambda: t_us)
    rec = _records(keys)
    data = b'{"choices":[{"delta":{"content":"hi"}}]}'
    conn = aredis.Connection()
    for seq, kind, tokens in ((1, KIND_CHUNK, 1), (2, KIND_CHUNK, 2), (3, KIND_RESPONSE, 0)):
        packed, commands = rec.entry(seq, kind, data, tokens)
        event_key = keys.events_for(rec.request.stream_id, 4)
        chunks_key = keys.chunks(rec.request.stream_id)
        expected: list[tuple[Any, ...]] = [
            ("XADD", chunks_key, rec.entry_id(seq), "k", kind, "d", data, "t", t_us),
            ("XADD", event_key, "*", "f", _event(rec, seq, kind, data, t_us, tokens)),
        ]
        if seq == 1:
            expected.append(
                ("HSET", keys.meta(rec.request.stream_id), F.FIRST_CHUNK_AT, t_us / 1e6)
            )
            minid = t_us // 1000 - 60_000
            expected.append(("XTRIM", event_key, "MINID", "~", minid))
        assert packed == b"".join(conn.pack_commands(expected))
        assert commands == len(expected)


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
    firehose = await r.xrange(keys.events_for(sid, 4))
    # the re-sent entry's firehose event is a duplicate (at-least-once), with its own time
    got = [f[b"f"] for _, f in firehose]
    assert got[:2] == [
        _event(rec, s, KIND_CHUNK, data, t, s) for s, t in zip((1, 2), times, strict=True)
    ]
    assert len(got) == 3
    first = await r.hget(keys.meta(sid), F.FIRST_CHUNK_AT)
    assert first == repr(times[0] / 1e6).encode()


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
