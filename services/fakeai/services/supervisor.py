"""`fakeai-streams up`: everything on one machine, started and stopped in order.

Start-up:
 1. Redis: the configured one (a single server or a cluster, detected), or an embedded server
    with its append-only file under ``<state-dir>/redis`` (recorded streams survive a restart);
    its URL is announced in ``<state-dir>/redis.url`` for the shell tools. It is checked before
    anything starts (:func:`fakeai.services.runtime.preflight`): a Redis that does not answer,
    or holds another key layout, ends ``up`` with one line and exit status 1.
 2. Producers and the metrics consumer (child processes).
 3. The edge: ``up`` binds the listening socket itself and hands it to each edge worker, so
    several edge processes share one port.
 4. Print the URL once ``/readyz`` answers.

Shutdown (Ctrl-C, SIGTERM, or any child exiting on its own):
 1. Stop intake: SIGTERM the edges, wait for them.
 2. SIGTERM producers and the metrics consumer (they finish or end their streams), wait.
 3. SIGKILL whatever is still running after its deadline.
 4. Stop the embedded Redis last.

Children run in their own sessions (a terminal's Ctrl-C reaches only ``up``, which stops them in
that order) and get SIGTERM if ``up`` itself dies, so nothing is left orphaned.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

from fakeai.config import Settings
from fakeai.embedded_redis import EmbeddedRedis, die_with_parent
from fakeai.services.runtime import RedisUnusable, preflight, redact
from fakeai.streams.client import LayoutMismatch

__all__ = ["child_env", "run_up"]

logger = logging.getLogger(__name__)

_STOP_DEADLINE_S = 15.0


def child_env(settings: Settings, redis_url: str) -> dict[str, str]:
    """The environment that gives a child process exactly these settings."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        var = f"FAKEAI_{name.upper()}"
        if value is None:
            env.pop(var, None)
        else:
            env[var] = str(value)
    env["FAKEAI_REDIS_URL"] = redis_url
    env.pop("REDIS_URL", None)
    return env


@dataclass
class _Child:
    role: str
    proc: subprocess.Popen[bytes]


def _spawn(role: str, env: dict[str, str], extra: list[str], fds: tuple[int, ...] = ()) -> _Child:
    cmd = [sys.executable, "-m", "fakeai.services.cli", role, *extra]
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdin=subprocess.DEVNULL,
        pass_fds=fds,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    logger.info("started %s (pid %d)", role, proc.pid)
    return _Child(role, proc)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=1.0) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _stop(children: list[_Child], deadline_s: float) -> None:
    for c in children:
        if c.proc.poll() is None:
            c.proc.send_signal(signal.SIGTERM)
    end = time.monotonic() + deadline_s
    for c in children:
        try:
            c.proc.wait(max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("%s (pid %d) did not stop in time: killing it", c.role, c.proc.pid)
            c.proc.kill()
            c.proc.wait()


def _hint(e: Exception, embedded: EmbeddedRedis | None, settings: Settings) -> str:
    """What to do about a preflight failure, when the message does not say it yet."""
    if isinstance(e, LayoutMismatch):
        if embedded is None:
            return ""
        return f" (the embedded Redis: fakeai-streams migrate --state-dir {settings.state_dir})"
    if embedded is None:
        return (
            ". Start it, or fix FAKEAI_REDIS_URL / --redis-url (unset both for an embedded Redis)"
        )
    return ""


def run_up(settings: Settings) -> int:
    stop_requested = False

    def _on_signal(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    embedded: EmbeddedRedis | None = None
    announce = settings.state_dir / "redis.url"
    redis_url = settings.redis_url
    if redis_url is None:
        embedded = EmbeddedRedis(state_dir=settings.state_dir / "redis", persistent=True)
        try:
            redis_url = embedded.start()
        except RuntimeError as e:
            print(f"fakeai-streams: {e}", file=sys.stderr)
            return 1
    try:
        cluster = asyncio.run(preflight(settings.model_copy(update={"redis_url": redis_url})))
    except (RedisUnusable, LayoutMismatch, KeyboardInterrupt) as e:
        if not isinstance(e, KeyboardInterrupt):
            print(f"fakeai-streams: {e}{_hint(e, embedded, settings)}", file=sys.stderr)
        if embedded:
            embedded.stop()
        return 1
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    if embedded:
        announce.write_text(redis_url + "\n")
    # The children skip detection and agree on it.
    env = child_env(settings.model_copy(update={"redis_cluster": cluster}), redis_url)

    try:
        sock = _listen(settings.host, settings.port)
    except OSError as e:
        print(
            f"fakeai-streams: cannot listen on {settings.host}:{settings.port}: {e}",
            file=sys.stderr,
        )
        if embedded:
            embedded.stop()
        return 1
    port = sock.getsockname()[1]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{host}:{port}"

    workers = [_spawn("producer", env, []) for _ in range(settings.producer_workers)]
    workers.append(_spawn("metrics", env, []))
    edges = [
        _spawn("edge", env, ["--fd", str(sock.fileno())], fds=(sock.fileno(),))
        for _ in range(settings.edge_workers)
    ]
    rc = 0
    try:
        announced = False
        while not stop_requested:
            dead = [c for c in (*workers, *edges) if c.proc.poll() is not None]
            if dead:
                for c in dead:
                    print(
                        f"fakeai-streams: {c.role} (pid {c.proc.pid}) exited with "
                        f"{c.proc.returncode}; stopping",
                        file=sys.stderr,
                    )
                rc = 1
                break
            if not announced and _ready(url):
                where = "embedded" if embedded else "external cluster" if cluster else "external"
                print(
                    f"FakeAI Streams ready on {url}  (Redis: {where}, {redact(redis_url)})",
                    flush=True,
                )
                print("Press Ctrl-C to stop.", flush=True)
                announced = True
            time.sleep(0.1)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _stop(edges, _STOP_DEADLINE_S)
        sock.close()
        _stop(workers, _STOP_DEADLINE_S)
        if embedded:
            embedded.stop()
            announce.unlink(missing_ok=True)
        print("FakeAI Streams stopped.", flush=True)
    return rc
