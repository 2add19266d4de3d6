"""`fakeai-streams up`: everything on one machine, started, kept running and stopped in order.

Start-up:
 1. Redis: the configured one (a single server or a cluster, detected), or an embedded server
    with its append-only file under ``<state-dir>/redis`` (recorded streams survive a restart)
    and a password generated once and kept in ``<state-dir>/redis.password`` (mode 0600,
    :func:`fakeai.embedded_redis.stored_password`); its URL, password included, is announced in
    ``<state-dir>/redis.url`` (mode 0600) for the shell tools. It is checked before anything
    starts (:func:`fakeai.services.runtime.preflight`): a Redis that does not answer, or holds
    another key layout, ends ``up`` with one line and exit status 1.
 2. Producers and the metrics consumer (child processes, given the URL with the password).
 3. The edge: ``up`` binds the listening socket itself and hands it to each edge worker, so
    several edge processes share one port, and connections that arrive while an edge restarts
    wait in the socket's backlog.
 4. Print the URL once ``/readyz`` answers.

Supervision, until SIGINT or SIGTERM: a child (producer, metrics consumer, edge) that exits,
whatever the cause, is started again after a delay (:class:`RestartPolicy`: 0.5 s, doubling
up to 10 s while it keeps failing, back to 0.5 s after it ran 30 s), with one log line each
time (``producer (pid 123) exited (signal 9); restarting in 0.5 s``). So is the embedded
Redis, on the same port, with the same password and data: it writes its append-only file
before it answers, so a SIGKILL loses no acknowledged write (``appendfsync everysec`` only
risks the last second on a machine crash). The services ride out the minute without Redis by
themselves (they retry with backoff).

Shutdown (SIGINT, SIGTERM; nothing else stops ``up``):
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
from collections.abc import Callable
from dataclasses import dataclass, field

from fakeai.config import Settings
from fakeai.embedded_redis import EmbeddedRedis, die_with_parent, stored_password, write_private
from fakeai.services.runtime import RedisUnusable, preflight, redact
from fakeai.streams.client import LayoutMismatch

__all__ = ["RestartPolicy", "child_env", "embedded_redis", "exit_status", "run_up"]

logger = logging.getLogger(__name__)

_STOP_DEADLINE_S = 15.0
_TICK_S = 0.1


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


@dataclass(slots=True)
class RestartPolicy:
    """How long to wait before starting a process again: :attr:`first_s` after a run of at
    least :attr:`healthy_s` (or the first time), twice the previous wait after a shorter one,
    never more than :attr:`cap_s`."""

    first_s: float = 0.5
    cap_s: float = 10.0
    healthy_s: float = 30.0
    last_s: float = 0.0
    """The previous wait (0: none yet)."""

    def delay(self, ran_s: float) -> float:
        """The wait before restarting a process that exited after running ``ran_s`` seconds."""
        if not self.last_s or ran_s >= self.healthy_s:
            self.last_s = self.first_s
        else:
            self.last_s = min(self.cap_s, self.last_s * 2)
        return self.last_s


def exit_status(returncode: int) -> str:
    """``signal 9`` for a process killed by SIGKILL, ``status 1`` for ``exit(1)``."""
    return f"signal {-returncode}" if returncode < 0 else f"status {returncode}"


@dataclass
class _Child:
    """One supervised process: ``launch`` starts it and returns its process."""

    role: str
    launch: Callable[[], subprocess.Popen[bytes]]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    """When to start it again (``time.monotonic()``); None while it runs."""
    policy: RestartPolicy = field(default_factory=RestartPolicy)

    def start(self) -> None:
        self.proc = self.launch()
        self.started_at = time.monotonic()
        self.restart_at = None
        logger.info("started %s (pid %d)", self.role, self.proc.pid)

    def supervise(self, now: float) -> None:
        """Notice an exit and schedule the restart; restart when it is due."""
        if self.restart_at is None:
            code = None if self.proc is None else self.proc.poll()
            if code is None or self.proc is None:
                return
            delay = self.policy.delay(now - self.started_at)
            self.restart_at = now + delay
            logger.warning(
                "%s (pid %d) exited (%s); restarting in %g s",
                self.role, self.proc.pid, exit_status(code), delay,
            )  # fmt: skip
        elif now >= self.restart_at:
            try:
                self.start()
            except (OSError, RuntimeError) as e:
                delay = self.policy.delay(0.0)
                self.restart_at = now + delay
                logger.error("%s did not start (%s); trying again in %g s", self.role, e, delay)


def _spawn(role: str, env: dict[str, str], extra: list[str], fds: tuple[int, ...] = ()) -> _Child:
    cmd = [sys.executable, "-m", "fakeai.services.cli", role, *extra]

    def launch() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            pass_fds=fds,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    child = _Child(role, launch)
    child.start()
    return child


def _redis_child(embedded: EmbeddedRedis) -> _Child:
    """The running embedded Redis as a child: restarted on its port, password and data."""

    def launch() -> subprocess.Popen[bytes]:
        embedded.stop()  # releases what the dead process held
        embedded.start()
        return embedded.process

    child = _Child("redis", launch, embedded.process, time.monotonic())
    logger.info("started redis (pid %d)", embedded.process.pid)
    return child


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
    running = [c.proc for c in children if c.proc is not None and c.proc.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    end = time.monotonic() + deadline_s
    for c in children:
        if c.proc is None:
            continue
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


def embedded_redis(settings: Settings) -> EmbeddedRedis:
    """The state directory's embedded Redis (not started), with its stored password."""
    return EmbeddedRedis(
        state_dir=settings.state_dir / "redis",
        persistent=True,
        password=stored_password(settings.state_dir / "redis.password"),
    )


def run_up(settings: Settings) -> int:
    stop_requested = False

    def _on_signal(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    embedded: EmbeddedRedis | None = None
    announce = settings.state_dir / "redis.url"
    redis_url = settings.redis_url
    if redis_url is None:
        embedded = embedded_redis(settings)
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
        write_private(announce, redis_url + "\n")
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

    redis = [_redis_child(embedded)] if embedded else []
    workers = [_spawn("producer", env, []) for _ in range(settings.producer_workers)]
    workers.append(_spawn("metrics", env, []))
    edges = [
        _spawn("edge", env, ["--fd", str(sock.fileno())], fds=(sock.fileno(),))
        for _ in range(settings.edge_workers)
    ]
    try:
        announced = False
        while not stop_requested:
            now = time.monotonic()
            for c in (*redis, *workers, *edges):
                c.supervise(now)
            if not announced and _ready(url):
                where = "embedded" if embedded else "external cluster" if cluster else "external"
                print(
                    f"FakeAI Streams ready on {url}  (Redis: {where}, {redact(redis_url)})",
                    flush=True,
                )
                print("Press Ctrl-C to stop.", flush=True)
                announced = True
            time.sleep(_TICK_S)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _stop(edges, _STOP_DEADLINE_S)
        sock.close()
        _stop(workers, _STOP_DEADLINE_S)
        if embedded:
            embedded.stop()
            announce.unlink(missing_ok=True)
        print("FakeAI Streams stopped.", flush=True)
    return 0
