"""`fakeai-streams up` from a subprocess: starts everything, serves, stops cleanly on SIGINT; with
an embedded Redis (password-protected), an external one, and an external 3-master cluster; and
restarts any child that dies."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from tests.support.servers import wait_until
from tests.support.up import UpProcesses, kill_child, stop_up, up_env

from fakeai.embedded_redis import free_port
from fakeai.services.bench.stack import LocalStack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _children(pid: int) -> set[int]:
    """Every descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents[int(entry.name)] = ppid
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        nxt = {p for p, pp in parents.items() if pp in frontier} - found
        found |= nxt
        frontier = nxt
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _env(prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKEAI_")}
    env.pop("REDIS_URL", None)
    env["FAKEAI_KEY_PREFIX"] = prefix
    return env


@pytest.mark.parametrize("redis", ["embedded", "external", "cluster"],
                         ids=["embedded-redis", "external-redis", "external-cluster"])  # fmt: skip
def test_up_serves_and_stops_cleanly(
    tmp_path: Path, key_prefix: str, request: pytest.FixtureRequest, redis: str
) -> None:
    external = redis != "embedded"
    env = _env(key_prefix)
    if external:
        env["FAKEAI_REDIS_URL"] = request.getfixturevalue(
            "cluster_url" if redis == "cluster" else "redis_url"
        )
    cmd = [
        sys.executable,
        "-m",
        "fakeai.services.cli",
        "up",
        "--port",
        "0",
        "--state-dir",
        str(tmp_path),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = ""
        deadline = time.monotonic() + 45
        while "ready on" not in line:
            assert time.monotonic() < deadline, "up did not announce readiness"
            line = proc.stdout.readline()
            assert line or proc.poll() is None, (
                f"up exited: {proc.stderr.read() if proc.stderr else ''}"
            )
        m = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        assert m, line
        assert ("Redis: external cluster" in line) is (redis == "cluster"), line
        base = m.group(1)
        children = _children(proc.pid)
        assert len(children) >= 3 + (0 if external else 1)  # producer, metrics, edge (+ redis)
        if not external:
            _only_with_the_password(tmp_path)

        body = {"model": "gpt-4o", "stream": False, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"X-FakeAI-TTFT-Ms": "0", "X-FakeAI-ITL-Ms": "0"}
        r = httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=20)
        assert r.status_code == 200, r.text
        assert r.json()["object"] == "chat.completion"

        body["stream"] = True
        with httpx.stream(
            "POST", f"{base}/v1/chat/completions", json=body, headers=headers, timeout=20
        ) as s:
            lines = [ln for ln in s.iter_lines() if ln.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
        assert json.loads(lines[0][6:])["object"] == "chat.completion.chunk"
        text = "".join(
            c["delta"].get("content") or ""
            for ln in lines[:-1]
            for c in json.loads(ln[6:])["choices"]
        )
        _shell_tools_round_trip(base, s.headers["x-stream-id"], text, env, tmp_path)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err
    assert "stopped" in out
    if not external:  # printed redacted, never in full
        password = (tmp_path / "redis.password").read_text().strip()
        assert password not in out
        assert password not in err
    wait_until(lambda: not any(_alive(p) for p in children), timeout_s=10)
    if not external:
        assert not (tmp_path / "redis.url").exists()


def _only_with_the_password(state_dir: Path) -> None:
    """Issue 10, finding 7: the embedded Redis had no password. Its URL, announced for the
    tools, is readable by its owner only and carries the password kept in the state directory;
    a client without it is refused (NOAUTH)."""
    announced = state_dir / "redis.url"
    assert stat.S_IMODE(announced.stat().st_mode) == 0o600
    assert stat.S_IMODE((state_dir / "redis.password").stat().st_mode) == 0o600
    url = urlsplit(announced.read_text().strip())
    assert url.password == (state_dir / "redis.password").read_text().strip()
    assert url.port is not None
    with socket.create_connection(("127.0.0.1", url.port), timeout=5) as s:
        s.sendall(b"PING\r\n")
        assert s.recv(256).startswith(b"-NOAUTH")


async def test_up_fell_over_when_a_child_was_sigkilled(tmp_path: Path, key_prefix: str) -> None:
    """Issue 10, finding 4: SIGKILL of any child stopped the whole stack. `up` now starts the
    producer, the edge, the metrics consumer and its embedded Redis again, each with a log
    line ("producer (pid N) exited (signal 9); restarting in 0.5 s"), the service answers a
    streaming request after each, and SIGTERM still stops every process, restarted ones
    included (checked by PID)."""
    stack = LocalStack(free_port(), tmp_path, env=up_env(key_prefix))
    await asyncio.to_thread(stack.start, 60.0)
    procs = UpProcesses(stack)
    assert stack.proc is not None
    try:
        for role in ("producer", "edge", "metrics", "redis"):
            await kill_child(stack, procs, role)
    finally:
        left = await stop_up(stack, procs) if stack.proc.poll() is None else ["up exited"]
        stack.stop()
    assert not left, left
    assert sorted(procs.seen.values()).count("producer") == 2, procs.seen


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fakeai.services.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _shell_tools_round_trip(
    base: str, stream_id: str, text: str, env: dict[str, str], tmp_path: Path
) -> None:
    """replay, export and import from the shell, against the running stack."""
    tools_env = {**env, "FAKEAI_STATE_DIR": str(tmp_path)}  # finds the announced Redis
    replay = _cli(["replay", stream_id, "--url", base, "--pace", "fast"], tools_env)
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout.rstrip("\n") == text

    export = _cli(["export", stream_id], tools_env)
    assert export.returncode == 0, export.stderr
    recording = tmp_path / "s.jsonl"
    recording.write_text(export.stdout)
    assert json.loads(export.stdout.splitlines()[0])["stream_id"] == stream_id

    again = _cli(["import", str(recording)], tools_env)
    assert again.returncode == 1  # the stream still exists: refused, nothing overwritten
    assert "already exists" in again.stderr
    other = {**tools_env, "FAKEAI_KEY_PREFIX": tools_env["FAKEAI_KEY_PREFIX"] + "copy"}
    imported = _cli(["import", str(recording)], other)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == stream_id
    copy = _cli(["export", stream_id], other).stdout.splitlines()
    assert copy[1:] == export.stdout.splitlines()[1:]  # same ids, timings and payloads
    assert json.loads(copy[0])["meta"]["imported"] == "1"

    deleted = _cli(["delete", stream_id], other)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.startswith(f"deleted {stream_id} (status done)")
    gone = _cli(["export", stream_id], other)
    assert gone.returncode == 1
    assert "not found" in gone.stderr


def test_up_refuses_layout1_data_in_one_line(tmp_path: Path, redis_url: str, sync_r: Any,
                                            key_prefix: str) -> None:  # fmt: skip
    """Data of the previous key layout: one line naming the fix, exit 1, nothing started."""
    sync_r.xadd(f"{key_prefix}:requests", {"r": "x"})  # a layout-1 name (Keys.layout1_markers)
    env = {**_env(key_prefix), "FAKEAI_REDIS_URL": redis_url}
    up = _cli(["up", "--port", "0", "--state-dir", str(tmp_path)], env)
    assert up.returncode == 1
    assert up.stderr.count("\n") == 1, up.stderr  # not a line from a service either
    assert "key layout 1" in up.stderr
    assert "fakeai-streams migrate" in up.stderr
    assert "ready" not in up.stdout
    # Nothing started, so nothing wrote to Redis: no layout mark, group or stream of a service.
    assert list(sync_r.scan_iter(f"{key_prefix}*")) == [f"{key_prefix}:requests".encode()]
