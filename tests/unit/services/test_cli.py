"""The CLI's argument handling and the environment `up` gives its children."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakeai.config import Settings
from fakeai.services.cli import build_parser, main, redis_url_for_tools, settings_from_args
from fakeai.services.supervisor import child_env


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKEAI_PORT", "9000")
    monkeypatch.setenv("FAKEAI_RETENTION_S", "60")
    args = build_parser().parse_args(["up", "--port", "9100", "--no-latency"])
    s = settings_from_args(args)
    assert s.port == 9100
    assert s.retention_s == 60
    assert s.latency_simulation is False


def test_child_env_reproduces_the_settings() -> None:
    s = Settings.from_env({}, port=1234, retention_s=5, api_key="k", latency_simulation=False)
    env = child_env(s, "redis://127.0.0.1:7/0")
    again = Settings.from_env(env)
    assert (
        again.model_dump()
        == s.model_copy(update={"redis_url": "redis://127.0.0.1:7/0"}).model_dump()
    )


def test_tools_find_the_redis_that_up_announced(tmp_path: Path) -> None:
    s = Settings.from_env({}, state_dir=tmp_path)
    with pytest.raises(SystemExit, match="FAKEAI_REDIS_URL"):
        redis_url_for_tools(s)
    (tmp_path / "redis.url").write_text("redis://127.0.0.1:5555/0\n")
    assert redis_url_for_tools(s) == "redis://127.0.0.1:5555/0"


def test_bad_settings_exit_with_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAKEAI_REDIS_URL", "localhost:6379")
    assert main(["export", "chatcmpl-x"]) == 2
    assert "FAKEAI_REDIS_URL" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["nope"])
    assert exc.value.code == 2
