"""`fakeai-streams migrate`: a Redis seeded by hand with key layout 1 ends on layout 2, its
recorded streams replay through fakeai.streams.recording, on a single Redis and on a cluster.

Layout-1 names are spelled out here on purpose: ``Keys`` builds only the current layout, and
these tests stand in for a Redis written by the previous version
(``git show a831220:shared/fakeai/streams/keys.py``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from tests.conftest import BOTH

from fakeai.embedded_redis import EmbeddedRedis
from fakeai.services.cli import main
from fakeai.streams import LAYOUT, Keys, new_stream_id
from fakeai.streams.client import LayoutMismatch, RedisClient, check_layout, connect
from fakeai.streams.log import Kind, Link, pack_command, pack_entry
from fakeai.streams.migrate import MigrationRefused, OldKey, classify, migrate
from fakeai.streams.recording import export_stream

CREATED = 1_700_000_000_000


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("p:{chatcmpl-abc}:chunks", (OldKey.CHUNKS, "chatcmpl-abc")),
        ("p:{cmpl-abc}:meta", (OldKey.META, "cmpl-abc")),
        ("p:requests", (OldKey.REQUESTS, None)),
        ("p:events:0", (OldKey.FIREHOSE, None)),
        ("p:events:12", (OldKey.FIREHOSE, None)),
        ("p:counters", (OldKey.COUNTERS, None)),
        ("p:ts:{ttft:gpt-4o}:fine:1700000000", (OldKey.TIMESERIES, None)),
        ("p:ts:{itl:gpt-4o}:coarse:1700000000:mm", (OldKey.TIMESERIES, None)),
        ("p:ts:{e2e:a:b}:total:0", (OldKey.TIMESERIES, None)),  # a model with a colon
        ("p:ts:seen:{chatcmpl-abc}", (OldKey.TIMESERIES, None)),
        ("p:rts:{ttft:gpt-4o}:raw", (OldKey.TIMESERIES, None)),
        ("p:rts:{ttft:gpt-4o}:raw:coarse", (OldKey.TIMESERIES, None)),
        # layout 2 and keys of both layouts: never touched
        ("p:{12}:chatcmpl-abc:chunks", None),
        ("p:{12}:chatcmpl-abc:meta", None),
        ("p:requests:{q0}", None),
        ("p:events:{e0}", None),
        ("p:ts:{gpt-4o}:ttft:fine:1700000000", None),
        ("p:ts:{gpt-4o}:ttft:fine:1700000000:mm", None),
        ("p:ts:{gpt-4o}:counters", None),
        ("p:ts:{gpt-4o}:seen:chatcmpl-abc", None),
        ("p:rts:{gpt-4o}:ttft:raw", None),
        ("p:layout", None),
        ("p:cancels", None),
        ("p:streams:active", None),
        ("p:ts:models", None),
        # another prefix
        ("q:requests", None),
        ("pp:{chatcmpl-abc}:chunks", None),
    ],
)
def test_classify(key: str, expected: tuple[OldKey, str | None] | None) -> None:
    assert classify(key, "p") == expected


async def _delete_prefix(client: RedisClient, prefix: str) -> None:
    async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        await client.delete(key)  # one key per DEL: a prefix's keys span slots


async def cli(argv: list[str]) -> int:
    """The CLI in a thread: it runs its own event loop (asyncio.run)."""
    return await asyncio.to_thread(main, argv)


@dataclass
class Seeded:
    streams: list[str]
    expiring: str
    """The stream whose keys carry a TTL."""
    transient: list[str]


async def seed_layout1(r: RedisClient, prefix: str, n: int = 3) -> Seeded:
    """What the previous version left: streams, requests, firehose, time series, counters."""
    p = prefix
    link = Link(r)
    streams = [new_stream_id("chat", CREATED + i) for i in range(n)]
    for i, sid in enumerate(streams):
        log, meta = f"{p}:{{{sid}}}:chunks".encode(), f"{p}:{{{sid}}}:meta".encode()
        ms = CREATED + i
        parts = [
            pack_entry(log, b"%d-1" % ms, Kind.CHUNK, b'{"n":1}', 10),
            pack_entry(log, b"%d-2" % ms, Kind.DONE, b'{"finish_reason":"stop"}', 20),
            pack_command(b"HSET", meta, b"status", b"done", b"model", b"gpt-4o"),
        ]
        if i == 0:
            parts += [pack_command(b"EXPIRE", k, b"3600") for k in (log, meta)]
        replies = await link.execute([(link.slot(log), b"".join(parts), len(parts))])
        assert not [x for x in replies if isinstance(x, Exception)]
    transient = [
        f"{p}:requests",
        *(f"{p}:events:{n}" for n in range(4)),
        f"{p}:ts:{{ttft:gpt-4o}}:fine:1700000000",
        f"{p}:ts:{{ttft:gpt-4o}}:fine:1700000000:mm",
        f"{p}:ts:seen:{{{streams[0]}}}",
        f"{p}:counters",
        f"{p}:ts:models",
    ]
    await r.xadd(f"{p}:requests", {"r": "x"})
    await r.xgroup_create(f"{p}:requests", "producers", id="0")
    for n in range(4):
        await r.xadd(f"{p}:events:{n}", {"f": "x"})
    await r.hset(transient[5], mapping={"count": 1})
    await r.zadd(transient[6], {"min": 1.0, "max": 2.0})
    await r.set(transient[7], "1")
    await r.hset(transient[8], "requests||gpt-4o", 3)
    await r.sadd(transient[9], "gpt-4o")
    # Same names in both layouts: kept.
    await r.xadd(f"{p}:cancels", {"c": "x"})
    await r.zadd(f"{p}:streams:active", {streams[-1]: CREATED})
    return Seeded(streams, streams[0], transient)


@BOTH
async def test_migrate_moves_streams_and_drops_transient_keys(rc: RedisClient, keys: Keys) -> None:
    seeded = await seed_layout1(rc, keys.prefix)
    with pytest.raises(LayoutMismatch, match="fakeai-streams migrate"):
        await check_layout(rc, keys)

    said: list[str] = []
    plan = await migrate(rc, keys, dry_run=True, say=said.append)
    assert plan.streams == 3
    assert said[0].startswith("would move 3 recorded streams (6 keys)")
    assert any("would delete the requests stream of layout 1 (1 entries" in s for s in said)
    assert any("would delete the counters" in s for s in said)
    assert said[-1] == f"would set the layout marker {keys.layout()} = {LAYOUT}"
    for key in seeded.transient:
        assert await rc.exists(key), key  # a dry run changes nothing
    assert await rc.get(keys.layout()) is None

    said.clear()
    await migrate(rc, keys, say=said.append)
    assert said[-1] == f"done: moved 3 streams, deleted {len(seeded.transient)} keys, key layout 2"
    await check_layout(rc, keys)  # what every service checks at start
    assert await rc.get(keys.layout()) == LAYOUT.encode()
    for key in seeded.transient:
        assert not await rc.exists(key), key
    assert await rc.xlen(keys.cancels()) == 1
    assert await rc.zscore(keys.active(), seeded.streams[-1]) == CREATED
    for sid in seeded.streams:
        lines = await export_stream(rc, keys, sid)
        entries = [msgspec.json.decode(line) for line in lines[1:]]
        assert [(e["k"], e["t"], e["d"]) for e in entries] == [
            ("c", 10, {"n": 1}),
            ("d", 20, {"finish_reason": "stop"}),
        ]
        assert msgspec.json.decode(lines[0])["meta"] == {"status": "done", "model": "gpt-4o"}
        assert not await rc.exists(f"{keys.prefix}:{{{sid}}}:chunks")
    for key in (keys.chunks(seeded.expiring), keys.meta(seeded.expiring)):
        assert 3000 < await rc.ttl(key) <= 3600  # the TTL moved with the key
    assert await rc.ttl(keys.chunks(seeded.streams[1])) == -1

    said.clear()
    plan = await migrate(rc, keys, say=said.append)  # idempotent
    assert plan.empty
    assert said == [f"nothing to migrate: the prefix is on key layout {LAYOUT}"]


@BOTH
async def test_migrate_finishes_an_interrupted_move(rc: RedisClient, keys: Keys) -> None:
    """A copy left at the new name by an interrupted run is replaced from the old key."""
    seeded = await seed_layout1(rc, keys.prefix, n=1)
    sid = seeded.streams[0]
    await rc.hset(keys.meta(sid), "status", "partial")
    await migrate(rc, keys, say=lambda _: None)
    assert await rc.hgetall(keys.meta(sid)) == {b"status": b"done", b"model": b"gpt-4o"}
    assert len(await export_stream(rc, keys, sid)) == 3


@BOTH
async def test_migrate_refuses_while_an_old_service_reads(rc: RedisClient, keys: Keys) -> None:
    seeded = await seed_layout1(rc, keys.prefix, n=1)
    await rc.xreadgroup("producers", "producer-1", {f"{keys.prefix}:requests": ">"}, count=1)
    with pytest.raises(MigrationRefused, match="producer-1"):
        await migrate(rc, keys, say=lambda _: None)
    assert await rc.exists(f"{keys.prefix}:requests")
    plan = await migrate(rc, keys, force=True, say=lambda _: None)
    assert plan.live
    assert await rc.exists(keys.chunks(seeded.streams[0]))


@BOTH
async def test_migrate_command(
    rc: RedisClient, keys: Keys, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seeded = await seed_layout1(rc, keys.prefix, n=2)
    args = ["migrate", "--redis-url", store_url, "--key-prefix", keys.prefix]
    assert await cli([*args, "--dry-run"]) == 0
    assert "would move 2 recorded streams" in capsys.readouterr().out
    assert await cli(args) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("done: moved 2 streams")
    assert await cli(args) == 0
    assert "nothing to migrate" in capsys.readouterr().out
    # An export through the CLI finds the moved stream.
    export = ["export", "--redis-url", store_url, "--key-prefix", keys.prefix]
    assert await cli([*export, seeded.streams[0]]) == 0
    assert seeded.streams[0] in capsys.readouterr().out


@BOTH
async def test_layout1_data_is_refused_by_the_tools(
    rc: RedisClient, keys: Keys, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seeded = await seed_layout1(rc, keys.prefix, n=1)
    args = ["--redis-url", store_url, "--key-prefix", keys.prefix]
    for command in (["export", seeded.streams[0]], ["delete", seeded.streams[0]], ["tail"]):
        assert await cli([*command, *args]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err  # one line, no traceback
        assert "key layout 1" in err
        assert "fakeai-streams migrate" in err


async def test_migrate_starts_the_embedded_redis_of_a_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`up` refuses layout-1 data, so `migrate --state-dir` serves the embedded data itself."""
    monkeypatch.delenv("FAKEAI_REDIS_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    keys = Keys("fakeai")
    server = EmbeddedRedis(state_dir=tmp_path / "redis", persistent=True)
    server.start()
    try:
        r = await connect(server.url)
        try:
            seeded = await seed_layout1(r, keys.prefix, n=1)
        finally:
            await r.aclose()
    finally:
        server.stop()
    assert await cli(["migrate", "--state-dir", str(tmp_path)]) == 0
    assert "done: moved 1 streams" in capsys.readouterr().out
    server.start()
    try:
        r = await connect(server.url)
        try:
            await check_layout(r, keys)
            assert len(await export_stream(r, keys, seeded.streams[0])) == 3
        finally:
            await r.aclose()
    finally:
        server.stop()
