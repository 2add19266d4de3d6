"""Settings: one frozen object from the environment; contradictions fail with a fix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fakeai.config import Settings


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.redis_url is None
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.retention_s == 86_400
    assert s.heartbeat_s == 15.0
    assert s.firehose_partitions == 4


def test_environment_and_overrides() -> None:
    env = {"FAKEAI_PORT": "9001", "REDIS_URL": "redis://127.0.0.1:1/0", "FAKEAI_RETENTION_S": "0"}
    s = Settings.from_env(env, port=9002, host=None)
    assert s.port == 9002
    assert s.host == "127.0.0.1"
    assert s.redis_url == "redis://127.0.0.1:1/0"
    assert s.retention_s == 0
    assert Settings.from_env({**env, "FAKEAI_REDIS_URL": "redis://x:2"}).redis_url == "redis://x:2"


def test_frozen() -> None:
    s = Settings.from_env({})
    with pytest.raises(ValidationError):
        s.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"FAKEAI_PORT": "x"}, "port"),
        ({"FAKEAI_TS_COARSE_S": "90", "FAKEAI_TS_FINE_S": "60"}, "FAKEAI_TS_COARSE_S"),
        ({"FAKEAI_TS_FINE_KEEP_S": "0"}, "ts_fine_keep_s"),
        ({"FAKEAI_REDIS_URL": "localhost:6379"}, "FAKEAI_REDIS_URL"),
        ({"FAKEAI_NO_SUCH": "1"}, None),
    ],
)
def test_bad_settings_name_what_to_change(env: dict[str, str], words: str | None) -> None:
    if words is None:  # unknown FAKEAI_* variables are not settings: ignored
        Settings.from_env(env)
        return
    with pytest.raises(ValueError, match=words):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("raw", "origins"),
    [
        (None, ()),
        ("*", ("*",)),
        (
            "http://a.example:3000, https://b.example/",
            ("http://a.example:3000", "https://b.example"),
        ),
        ("http://a.example,*", ("*",)),
    ],
)
def test_cors_origins(raw: str | None, origins: tuple[str, ...]) -> None:
    env = {} if raw is None else {"FAKEAI_CORS_ORIGINS": raw}
    assert Settings.from_env(env).cors_origin_list == origins


@pytest.mark.parametrize(
    "raw", ["a.example", "ftp://a.example", "http://a.example/path", "http://"]
)
def test_a_cors_origin_that_is_not_one_fails_naming_it(raw: str) -> None:
    with pytest.raises(ValueError, match="FAKEAI_CORS_ORIGINS") as e:
        Settings.from_env({"FAKEAI_CORS_ORIGINS": raw})
    assert repr(raw.rstrip("/")) in str(e.value)


def test_public_metrics_from_env() -> None:
    assert Settings.from_env({}).public_metrics is False
    assert Settings.from_env({"FAKEAI_PUBLIC_METRICS": "true"}).public_metrics is True


def test_compress_streams_from_env() -> None:
    assert Settings.from_env({}).compress_streams is True
    assert Settings.from_env({"FAKEAI_COMPRESS_STREAMS": "false"}).compress_streams is False
