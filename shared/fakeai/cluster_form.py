"""Turn running Redis Cluster nodes into one cluster: the same commands on loopback and in Docker.

:class:`fakeai.embedded_cluster.EmbeddedCluster` (tests, benchmarks) and the ``cluster-init``
service of ``docker-compose.yml`` (profile ``cluster``) both call :func:`form_cluster`::

    python -m fakeai.cluster_form --replicas-per-master 1 HOST:PORT ...

The first ``N / (1 + replicas)`` addresses are masters, the rest replicas, replica ``j``
following master ``j mod masters``. The nodes run with ``cluster-enabled yes``. No redis-cli is
needed: these are the commands ``redis-cli --cluster create`` sends
(https://redis.io/docs/latest/operate/oss_and_stack/management/scaling/):

1. wait until every node answers PING;
2. give each master that is still alone a distinct config epoch (``CLUSTER SET-CONFIG-EPOCH``,
   so no epoch collision has to be resolved later) and an even share of the 16384 slots
   (``CLUSTER ADDSLOTSRANGE``, Redis 7.0+);
3. ``CLUSTER MEET`` from the first node to every node it does not know yet, by IP address (the
   command takes no host name, https://redis.io/docs/latest/commands/cluster-meet/) and cluster
   bus port (read from the node's own CLUSTER NODES line); wait until every node knows every
   node;
4. ``CLUSTER REPLICATE <master id>`` on each replica not yet following its master; wait until
   its replication link is up;
5. wait until every node reports ``cluster_state:ok`` and all return the same ``CLUSTER SLOTS``.

Idempotent: a node set that already is one healthy cluster of exactly these nodes (every slot
served, whatever roles failovers left) is left as it is and reported (``Formed.already``), so
``cluster-init`` can run on every ``docker compose up``. Each step skips what a node already
has, so a formation cut short is completed by running it again. A node that belongs to another
cluster, or serves slots other than its share, is refused (:class:`ClusterFormError`), never
changed.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import redis

from fakeai.cluster_topology import (
    SLOTS,
    Address,
    NodeConn,
    agreed_slot_map,
    describe_states,
    poll_until,
    slot_ranges,
)

__all__ = [
    "ClusterFormError",
    "Formed",
    "FormedNode",
    "form_cluster",
    "main",
    "parse_args",
    "plan_addresses",
]

logger = logging.getLogger(__name__)


class ClusterFormError(RuntimeError):
    """The nodes could not be formed into a cluster; ``node`` is the one to look at first."""

    def __init__(self, message: str, node: Address | None = None) -> None:
        super().__init__(message)
        self.node = node


@dataclass(frozen=True, slots=True)
class FormedNode:
    address: Address
    node_id: str
    role: Literal["master", "replica"]
    master: Address | None
    """For a replica, the address (as given) of the master it follows."""
    slots: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Formed:
    """What :func:`form_cluster` found or made."""

    nodes: tuple[FormedNode, ...]
    already: bool
    """The nodes were one healthy cluster already: nothing was sent."""
    actions: tuple[str, ...]
    """Every command sent, as ``host:port COMMAND args``."""
    elapsed_s: float

    def summary(self) -> list[str]:
        verb = "already a cluster" if self.already else f"formed in {self.elapsed_s:.2f} s"
        masters = sum(1 for n in self.nodes if n.role == "master")
        out = [f"{verb}: {masters} masters, {len(self.nodes) - masters} replicas"]
        for n in self.nodes:
            where = ",".join(f"{a}-{b}" for a, b in n.slots)
            role = f"master slots {where}" if n.role == "master" else "replica of "
            if n.master is not None:
                role += f"{n.master[0]}:{n.master[1]}"
            out.append(f"  {n.address[0]}:{n.address[1]} {n.node_id[:12]} {role}")
        return out


def form_cluster(
    masters: Sequence[Address],
    replicas: Sequence[tuple[Address, int]] = (),
    timeout_s: float = 30.0,
    *,
    alive: Callable[[], object] | None = None,
) -> Formed:
    """Join running cluster-enabled nodes into one cluster (see the module docstring).

    ``replicas`` pairs a node with the index in ``masters`` of the master it follows.
    ``alive`` is called on every poll and may raise to stop at once (a node process that exited).

    Raises:
        ClusterFormError: a node answers no PING, belongs to another cluster, refuses a command,
            or the cluster is not ok within ``timeout_s``.
        ValueError: no master, an address given twice, or a replica's master index out of range.
    """
    if not masters:
        raise ValueError("form_cluster: need at least one master")
    addresses = [*masters, *(a for a, _ in replicas)]
    if len(set(addresses)) != len(addresses):
        raise ValueError(f"form_cluster: an address is given twice: {addresses}")
    bad = [m for _, m in replicas if not 0 <= m < len(masters)]
    if bad:
        raise ValueError(f"form_cluster: replica master indexes out of range: {bad}")
    t0 = time.monotonic()
    job = _Formation(
        [NodeConn(a) for a in addresses], len(masters), [m for _, m in replicas], alive
    )
    try:
        return job.run(t0, t0 + timeout_s)
    except redis.RedisError as e:  # outside a poll: a node that went away mid-formation
        raise ClusterFormError(f"cluster_form: {e!r}") from e
    finally:
        for node in job.nodes:
            node.close()


class _Formation:
    def __init__(
        self,
        nodes: list[NodeConn],
        masters: int,
        replica_of: list[int],
        alive: Callable[[], object] | None,
    ) -> None:
        self.nodes, self.masters, self.replica_of, self.alive = nodes, masters, replica_of, alive
        self.ids: dict[Address, str] = {}
        self.actions: list[str] = []

    def run(self, t0: float, deadline: float) -> Formed:
        self._poll("every node answers PING", self._all_answer, deadline)
        if self._formed():
            return self._result(already=True, elapsed_s=time.monotonic() - t0)
        self._refuse_strangers()
        ranges = slot_ranges(self.masters)
        for epoch, (node, (first, last)) in enumerate(
            zip(self.nodes[: self.masters], ranges, strict=True), start=1
        ):
            me = node.myself()
            if me.slots == ((first, last),):
                continue
            info = node.info()
            if info.get("cluster_known_nodes") == "1" and info.get("cluster_my_epoch") == "0":
                self._send(node, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
            self._send(node, "CLUSTER", "ADDSLOTSRANGE", first, last)
        seed = self.nodes[0]
        known = {line.node_id for line in seed.view() if "handshake" not in line.flags}
        for node in self.nodes[1:]:
            if self.ids[node.address] not in known:
                me = node.myself()
                ip = _resolve(*node.address)
                self._send(seed, "CLUSTER", "MEET", ip, node.address[1], me.bus_port)
        self._poll("every node knows every node", self._all_met, deadline)
        for node, m in zip(self.nodes[self.masters :], self.replica_of, strict=True):
            master_id = self.ids[self.nodes[m].address]
            me = node.myself()
            if "slave" in me.flags and me.master_id == master_id:
                continue
            self._send(node, "CLUSTER", "REPLICATE", master_id)
        self._poll("replication links up", self._replicas_synced, deadline)
        self._poll("cluster_state:ok and one slot map on every node", self._ok, deadline)
        elapsed = time.monotonic() - t0
        logger.info("cluster of %d nodes formed in %.2f s", len(self.nodes), elapsed)
        return self._result(already=False, elapsed_s=elapsed)

    # -- steps

    def _send(self, node: NodeConn, *args: str | int) -> None:
        self.actions.append(f"{node.name} {' '.join(str(a) for a in args)}")
        try:
            node.cmd(*args)
        except redis.ResponseError as e:
            raise ClusterFormError(
                f"cluster_form: {node.name} refused {' '.join(map(str, args))}: {e}",
                node.address,
            ) from e

    def _refuse_strangers(self) -> None:
        """Only fresh nodes, or nodes of this very formation cut short, are touched."""
        ours = set(self.ids.values())
        ranges = slot_ranges(self.masters)
        for i, node in enumerate(self.nodes):
            view = node.view()
            strangers = [
                f"{line.address[0]}:{line.address[1]}"
                for line in view
                if line.node_id not in ours and "handshake" not in line.flags
            ]
            if strangers:
                raise ClusterFormError(
                    f"cluster_form: {node.name} belongs to a cluster with other nodes "
                    f"({', '.join(strangers)}); give every node of that cluster, or reset this "
                    "one (CLUSTER RESET HARD, or start it without its nodes.conf)",
                    node.address,
                )
            me = next(line for line in view if "myself" in line.flags)
            share = (ranges[i],) if i < self.masters else ()
            if me.slots and me.slots != share:
                raise ClusterFormError(
                    f"cluster_form: {node.name} serves slots {list(me.slots)}, not its share "
                    f"{list(share)}; reset it (CLUSTER RESET HARD) or give the addresses in "
                    "the order of the cluster it belongs to",
                    node.address,
                )

    # -- checks (each returns False while not there yet)

    def _all_answer(self) -> bool:
        for node in self.nodes:
            if node.address not in self.ids:
                node.client.ping()
                try:
                    self.ids[node.address] = node.cmd("CLUSTER", "MYID")
                except redis.ResponseError as e:
                    raise ClusterFormError(
                        f"cluster_form: {node.name} is not a cluster node ({e}); start it "
                        "with cluster-enabled yes",
                        node.address,
                    ) from e
        return True

    def _formed(self) -> bool:
        ours = set(self.ids.values())
        for node in self.nodes:
            info = node.info()
            if (info.get("cluster_state"), info.get("cluster_slots_assigned")) != (
                "ok",
                f"{SLOTS}",
            ):
                return False
            if {line.node_id for line in node.view()} != ours:
                return False
        return agreed_slot_map(self.nodes) is not None

    def _all_met(self) -> bool:
        ours = set(self.ids.values())
        for node in self.nodes:
            seen = {line.node_id for line in node.view() if "handshake" not in line.flags}
            if seen != ours:
                return False
        return True

    def _replicas_synced(self) -> bool:
        for node in self.nodes[self.masters :]:
            info = node.client.info("replication")
            if info.get("master_link_status") != "up":
                return False
        return True

    def _ok(self) -> bool:
        return agreed_slot_map(self.nodes) is not None

    # -- plumbing

    def _poll(self, what: str, check: Callable[[], bool], deadline: float) -> None:
        if not poll_until(check, deadline, self.alive):
            lines, worst = describe_states(self.nodes)
            raise ClusterFormError(
                f"cluster_form: no {what} in time\n" + "\n".join(lines),
                self.nodes[worst].address if worst is not None else None,
            )

    def _result(self, *, already: bool, elapsed_s: float) -> Formed:
        by_id = {node_id: address for address, node_id in self.ids.items()}
        out = []
        for node in self.nodes:
            me = node.myself()
            replica = "slave" in me.flags
            out.append(
                FormedNode(
                    address=node.address,
                    node_id=me.node_id,
                    role="replica" if replica else "master",
                    master=by_id.get(me.master_id) if replica else None,
                    slots=me.slots,
                )
            )
        return Formed(tuple(out), already, tuple(self.actions), elapsed_s)


def _resolve(host: str, port: int) -> str:
    """The node's IP address, IPv4 first (CLUSTER MEET takes an address, not a name)."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    v4 = [f for f in found if f[0] == socket.AF_INET]
    return str((v4 or found)[0][4][0])


def _address(text: str) -> Address:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def plan_addresses(
    addresses: Sequence[Address], replicas_per_master: int
) -> tuple[list[Address], list[tuple[Address, int]]]:
    """Masters first, then replicas, replica ``j`` following master ``j mod masters``."""
    if replicas_per_master < 0:
        raise ValueError(f"replicas per master: must be >= 0, got {replicas_per_master}")
    per = 1 + replicas_per_master
    if not addresses or len(addresses) % per:
        raise ValueError(
            f"{len(addresses)} nodes do not make masters with {replicas_per_master} "
            f"replica(s) each: give a multiple of {per}"
        )
    count = len(addresses) // per
    masters = list(addresses[:count])
    return masters, [(a, j % count) for j, a in enumerate(addresses[count:])]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The CLI's arguments, with ``masters`` and ``replicas`` as :func:`form_cluster` takes
    them (docker-compose.yml's ``cluster-init`` command is checked against this in the tests)."""
    parser = argparse.ArgumentParser(
        prog="python -m fakeai.cluster_form",
        description="Join running cluster-enabled Redis nodes into one cluster (idempotent).",
    )
    parser.add_argument("nodes", nargs="+", type=_address, metavar="HOST:PORT")
    parser.add_argument("--replicas-per-master", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds (60)")
    args = parser.parse_args(argv)
    try:
        args.masters, args.replicas = plan_addresses(args.nodes, args.replicas_per_master)
    except ValueError as e:
        parser.error(str(e))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        formed = form_cluster(args.masters, args.replicas, args.timeout)
    except ClusterFormError as e:
        print(e, file=sys.stderr)
        return 1
    for line in formed.actions:
        print(f"sent {line}")
    print("\n".join(formed.summary()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
