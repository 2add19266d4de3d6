"""The CLI's argument handling, the environment `up` gives its children, and how commands end
when Redis is not there (no Redis needed)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from fakeai.config import Settings
from fakeai.embedded_redis import free_port
from fakeai.services.cli import build_parser, main, redis_url_for_tools, settings_from_args
from fakeai.services.supervisor import RestartPolicy, child_env, exit_status


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


@pytest.mark.parametrize(
    ("flags", "expected"),
    [([], None), (["--redis-cluster"], True), (["--no-redis-cluster"], False)],
)
def test_redis_cluster_flag_maps_to_the_setting(flags: list[str], expected: bool | None) -> None:
    for command in (["up"], ["edge"], ["producer"], ["metrics"], ["tail"], ["export", "x"],
                    ["import", "f"], ["delete", "x"], ["migrate"]):  # fmt: skip
        args = build_parser().parse_args([*command, *flags])
        assert settings_from_args(args).redis_cluster is expected, command


@pytest.mark.parametrize("cluster", [None, True, False])
def test_child_env_carries_the_cluster_mode(cluster: bool | None) -> None:
    s = Settings.from_env({}, redis_cluster=cluster)
    assert Settings.from_env(child_env(s, "redis://127.0.0.1:7/0")).redis_cluster is cluster


def test_delete_and_migrate_arguments() -> None:
    args = build_parser().parse_args(["delete", "chatcmpl-x", "--force"])
    assert (args.stream_id, args.force) == ("chatcmpl-x", True)
    args = build_parser().parse_args(["migrate", "--dry-run"])
    assert (args.dry_run, args.force) == (True, False)


@pytest.mark.parametrize("command", [["up", "--port", "0"], ["export", "chatcmpl-x"], ["tail"]])
def test_an_unreachable_redis_is_one_line_and_a_quick_exit(
    command: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: `up` printed a 65-line traceback after ~16 s of retrying. Quick means one
    connection attempt and no retry: counted, not timed, so a loaded machine cannot fail it."""
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    attempts: list[object] = []
    open_connection = asyncio.open_connection

    async def counted(*args: Any, **kwargs: Any) -> Any:
        attempts.append(kwargs.get("port"))
        return await open_connection(*args, **kwargs)

    monkeypatch.setattr(asyncio, "open_connection", counted)
    assert main([*command, "--redis-url", url, "--state-dir", str(tmp_path)]) == 1
    assert len(attempts) == 1, attempts
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"cannot reach Redis at {url}" in err


def test_a_password_is_not_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"redis://user:secret@127.0.0.1:{free_port()}/0"
    assert main(["export", "x", "--redis-url", url]) == 1
    err = capsys.readouterr().err
    assert "secret" not in err
    assert "user:***@127.0.0.1" in err


def test_migrate_without_any_redis_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FAKEAI_REDIS_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["migrate", "--state-dir", str(tmp_path)]) == 1
    assert "no Redis to migrate" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("runs_s", "delays_s"),
    [
        ([0.1], [0.5]),  # the first restart waits 0.5 s
        ([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], [0.5, 1, 2, 4, 8, 10, 10]),  # doubling, capped
        ([0.1, 0.1, 0.1, 30.0], [0.5, 1, 2, 0.5]),  # a run of 30 s resets it
        ([0.1, 0.1, 29.9], [0.5, 1, 2]),
        ([45.0, 45.0], [0.5, 0.5]),
    ],
)
def test_restart_policy_backs_off_and_resets(runs_s: list[float], delays_s: list[float]) -> None:
    policy = RestartPolicy()
    assert [policy.delay(ran) for ran in runs_s] == delays_s


@pytest.mark.parametrize(("code", "text"), [(-9, "signal 9"), (-15, "signal 15"), (1, "status 1"),
                                            (0, "status 0")])  # fmt: skip
def test_exit_status_names_the_signal(code: int, text: str) -> None:
    assert exit_status(code) == text
