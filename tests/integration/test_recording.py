"""Export a stream's log to JSON Lines and import it back, against a real Redis."""

from __future__ import annotations

import msgspec
import pytest
import redis.asyncio as aredis

from fakeai.streams import Keys, new_stream_id
from fakeai.streams.recording import RecordingError, export_stream, import_stream

pytestmark = pytest.mark.redis

CREATED = 1_700_000_000_000


async def _write_stream(r: aredis.Redis, keys: Keys, sid: str, n: int) -> None:
    pipe = r.pipeline(transaction=False)
    for i in range(1, n + 1):
        data = msgspec.json.encode({"choices": [{"index": 0, "delta": {"content": f" t{i}"}}]})
        pipe.xadd(
            keys.chunks(sid), {"k": "c", "d": data, "t": 1000 + 50_000 * i}, id=f"{CREATED}-{i}"
        )
    pipe.xadd(
        keys.chunks(sid),
        {"k": "d", "d": b'{"finish_reason":"stop"}', "t": 9_999_999},
        id=f"{CREATED}-{n + 1}",
    )
    pipe.hset(keys.meta(sid), mapping={"status": "done", "model": "gpt-4o", "accepted_at": "1.0"})
    await pipe.execute()


async def test_export_then_import_round_trips(r: aredis.Redis, keys: Keys) -> None:
    sid = new_stream_id("chat", CREATED)
    await _write_stream(r, keys, sid, 20)
    before = await r.xrange(keys.chunks(sid))
    lines = await export_stream(r, keys, sid)
    assert len(lines) == 1 + 21
    assert msgspec.json.decode(lines[1])["d"]["choices"][0]["delta"]["content"] == " t1"

    await r.delete(keys.chunks(sid), keys.meta(sid))
    assert await import_stream(r, keys, lines) == sid
    assert await r.xrange(keys.chunks(sid)) == before  # same ids, same t, same bytes
    assert (await r.hgetall(keys.meta(sid)))[b"model"] == b"gpt-4o"

    with pytest.raises(RecordingError, match="already exists"):
        await import_stream(r, keys, lines)


async def test_export_of_unknown_stream_fails(r: aredis.Redis, keys: Keys) -> None:
    with pytest.raises(RecordingError, match="not found"):
        await export_stream(r, keys, new_stream_id("chat", CREATED))


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        ([b"not json"], "not JSON"),
        ([b'{"type":"entry","id":"1-1","d":{}}'], "meta line"),
        ([b'{"type":"meta","stream_id":"chatcmpl-0018bcfe568' + b"0" * 24 + b'"}'], "terminal"),
        ([b'{"type":"what"}'], "type"),
    ],
)
async def test_bad_recordings_are_refused(
    r: aredis.Redis, keys: Keys, lines: list[bytes], words: str
) -> None:
    with pytest.raises(RecordingError, match=words):
        await import_stream(r, keys, lines)
