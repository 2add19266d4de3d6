"""Export a stream's log to JSON Lines, import it back, delete it: on a single Redis and on a
3-master cluster."""

from __future__ import annotations

import msgspec
import pytest
from tests.conftest import BOTH

from fakeai.streams import Keys, new_stream_id
from fakeai.streams.client import RedisClient
from fakeai.streams.log import Kind, Link, pack_command, pack_entry
from fakeai.streams.recording import (
    RecordingError,
    delete_stream,
    export_stream,
    import_stream,
    parse_recording,
)

pytestmark = pytest.mark.redis

CREATED = 1_700_000_000_000


async def write_stream(
    r: RedisClient, keys: Keys, sid: str, n: int, *, terminal: bool = True, status: str = "done"
) -> None:
    """A stream as a producer leaves it: n chunks (+ a done entry) and its meta hash."""
    log = keys.chunks(sid).encode()
    parts = []
    for i in range(1, n + 1):
        data = msgspec.json.encode({"choices": [{"index": 0, "delta": {"content": f" t{i}"}}]})
        parts.append(pack_entry(log, b"%d-%d" % (CREATED, i), Kind.CHUNK, data, 1000 + 50_000 * i))
    if terminal:
        done = b'{"finish_reason":"stop"}'
        parts.append(pack_entry(log, b"%d-%d" % (CREATED, n + 1), Kind.DONE, done, 9_999_999))
    meta = keys.meta(sid).encode()
    parts.append(pack_command(b"HSET", meta, b"status", status.encode(), b"model", b"gpt-4o"))
    link = Link(r)
    replies = await link.execute([(link.slot(log), b"".join(parts), len(parts))])
    assert not [x for x in replies if isinstance(x, Exception)]


@BOTH
async def test_export_then_import_round_trips(rc: RedisClient, keys: Keys) -> None:
    sid = new_stream_id("chat", CREATED)
    await write_stream(rc, keys, sid, 20)
    before = await rc.xrange(keys.chunks(sid))
    lines = await export_stream(rc, keys, sid)
    assert len(lines) == 1 + 21
    assert msgspec.json.decode(lines[1])["d"]["choices"][0]["delta"]["content"] == " t1"

    await rc.delete(keys.chunks(sid), keys.meta(sid))
    assert await import_stream(rc, keys, lines, retention_s=600) == sid
    assert await rc.xrange(keys.chunks(sid)) == before  # same ids, same t, same bytes
    meta = await rc.hgetall(keys.meta(sid))
    assert (meta[b"model"], meta[b"imported"]) == (b"gpt-4o", b"1")
    assert 0 < await rc.ttl(keys.chunks(sid)) <= 600
    again = await export_stream(rc, keys, sid)
    assert again[1:] == lines[1:]
    assert msgspec.json.decode(again[0])["meta"] == {
        "status": "done",
        "model": "gpt-4o",
        "imported": "1",
    }

    with pytest.raises(RecordingError, match=r"already exists: import --replace"):
        await import_stream(rc, keys, lines)


@BOTH
async def test_import_replace_overwrites_a_finished_stream(rc: RedisClient, keys: Keys) -> None:
    sid = new_stream_id("chat", CREATED)
    await write_stream(rc, keys, sid, 3)
    lines = await export_stream(rc, keys, sid)
    await rc.delete(keys.chunks(sid), keys.meta(sid))
    await write_stream(rc, keys, sid, 7)  # the same id, another log: replaced whole
    await rc.hset(keys.meta(sid), "stale", "1")
    assert await import_stream(rc, keys, lines, replace=True) == sid
    again = await export_stream(rc, keys, sid)
    assert again[1:] == lines[1:]
    meta = msgspec.json.decode(again[0])["meta"]
    assert meta == {"status": "done", "model": "gpt-4o", "imported": "1"}  # no "stale"


@BOTH
async def test_import_replace_refuses_a_running_stream(rc: RedisClient, keys: Keys) -> None:
    sid = new_stream_id("chat", CREATED)
    await write_stream(rc, keys, sid, 3)
    lines = await export_stream(rc, keys, sid)
    await rc.delete(keys.chunks(sid), keys.meta(sid))
    await write_stream(rc, keys, sid, 2, terminal=False, status="running")
    with pytest.raises(RecordingError, match="still running"):
        await import_stream(rc, keys, lines, replace=True)
    assert len(await rc.xrange(keys.chunks(sid))) == 2


@BOTH
async def test_export_of_unknown_stream_fails(rc: RedisClient, keys: Keys) -> None:
    with pytest.raises(RecordingError, match="not found"):
        await export_stream(rc, keys, new_stream_id("chat", CREATED))


@BOTH
async def test_delete_removes_a_finished_stream(rc: RedisClient, keys: Keys) -> None:
    sid = new_stream_id("chat", CREATED)
    await write_stream(rc, keys, sid, 3)
    await rc.zadd(keys.active(), {sid: CREATED})
    gone = await delete_stream(rc, keys, sid)
    assert (gone.status, gone.was_running) == ("done", False)
    assert await rc.exists(keys.chunks(sid), keys.meta(sid)) == 0
    assert await rc.zscore(keys.active(), sid) is None
    with pytest.raises(RecordingError, match="not found"):
        await delete_stream(rc, keys, sid)


@BOTH
async def test_delete_refuses_a_running_stream_unless_forced(rc: RedisClient, keys: Keys) -> None:
    sid = new_stream_id("chat", CREATED)
    await write_stream(rc, keys, sid, 3, terminal=False, status="running")
    with pytest.raises(RecordingError, match=r"still running.*--force"):
        await delete_stream(rc, keys, sid)
    assert await rc.exists(keys.chunks(sid)) == 1
    gone = await delete_stream(rc, keys, sid, force=True)
    assert gone.was_running
    assert await rc.exists(keys.chunks(sid), keys.meta(sid)) == 0


@BOTH
async def test_a_terminal_entry_makes_a_stream_finished_whatever_its_meta(
    rc: RedisClient, keys: Keys
) -> None:
    """The producer writes the terminal entry before it updates the meta hash."""
    sid = new_stream_id("chat", CREATED)
    await write_stream(rc, keys, sid, 2, status="running")
    assert not (await delete_stream(rc, keys, sid)).was_running


SID = "chatcmpl-0018bcfe568" + "0" * 24
META = b'{"type":"meta","stream_id":"' + SID.encode() + b'"}'


def _entry(eid: str, k: str = "c") -> bytes:
    return b'{"type":"entry","id":"%s","k":"%s","t":1,"d":{}}' % (eid.encode(), k.encode())


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        ([b"not json"], "not JSON"),
        ([_entry("1-1", "d")], "meta line"),
        ([META], "terminal"),
        ([b'{"type":"what"}'], "type"),
        ([META, b'{"type":"entry","id":"1-1"}'], "type 'meta' or 'entry'"),
        ([META, _entry("1-x", "d")], "'<ms>-<seq>'"),
        ([META, _entry("1-2"), _entry("1-2", "d")], "not above"),
        ([META, _entry("1-1", "z")], "unknown entry kind"),
        ([META, _entry("1-1", "d"), _entry("1-2", "d")], "after the terminal"),
        ([META, _entry("1-1")], "terminal"),
    ],
)
def test_bad_recordings_are_refused(lines: list[bytes], words: str) -> None:
    with pytest.raises(RecordingError, match=words):
        parse_recording(lines)


@BOTH
async def test_import_refuses_a_bad_recording_before_writing(rc: RedisClient, keys: Keys) -> None:
    with pytest.raises(RecordingError, match="terminal"):
        await import_stream(rc, keys, [META, _entry("1-1")])
    assert await rc.exists(keys.chunks(SID), keys.meta(SID)) == 0


@BOTH
async def test_an_import_that_races_another_writer_is_refused(
    rc: RedisClient, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log appeared between the existence check and the write: its entry ids collide."""
    sid = new_stream_id("chat", CREATED)
    await write_stream(rc, keys, sid, 2)
    lines = await export_stream(rc, keys, sid)

    async def nothing_there(*_keys: str) -> int:
        return 0

    monkeypatch.setattr(rc, "exists", nothing_there)
    with pytest.raises(RecordingError, match="already exists"):
        await import_stream(rc, keys, lines)
