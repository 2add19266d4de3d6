"""What a Redis Cluster node says about the cluster, parsed: CLUSTER NODES, SLOTS and INFO.

The vocabulary that :mod:`fakeai.cluster_form` (joining nodes into a cluster) and
:mod:`fakeai.embedded_cluster` (a loopback cluster for tests and benchmarks) share, plus one
synchronous connection per node with the settings both use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "POLL_S",
    "SLOTS",
    "TRANSIENT",
    "Address",
    "NodeConn",
    "NodeLine",
    "SlotRange",
    "agreed_slot_map",
    "describe_states",
    "normalize_slots",
    "parse_cluster_info",
    "parse_cluster_nodes",
    "poll_until",
    "slot_ranges",
]

Address = tuple[str, int]
# (first slot, last slot, master address, replica addresses sorted)
SlotRange = tuple[int, int, Address, tuple[Address, ...]]

SLOTS = 16384

TRANSIENT = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
"""Errors a poll asks again after: a node starting, busy, or a replica loading its first sync."""

POLL_S = 0.02


def poll_until(
    check: Callable[[], bool], deadline: float, alive: Callable[[], object] | None = None
) -> bool:
    """Ask ``check`` every 20 ms until it says True (then True) or ``deadline`` (a
    ``time.monotonic()`` value) passes (then False); :data:`TRANSIENT` errors count as "not
    yet". ``alive`` runs before every try and may raise to stop at once."""
    while True:
        if alive is not None:
            alive()
        try:
            if check():
                return True
        except TRANSIENT:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """16384 slots split evenly, in order: master i serves the i-th range."""
    return [(i * SLOTS // masters, (i + 1) * SLOTS // masters - 1) for i in range(masters)]


@dataclass(frozen=True, slots=True)
class NodeLine:
    """One line of CLUSTER NODES (https://redis.io/docs/latest/commands/cluster-nodes/)."""

    node_id: str
    address: Address
    """``ip:port`` as gossiped; the ip is empty on a node that has met no other yet."""
    bus_port: int
    flags: frozenset[str]  # myself, master, slave, fail?, fail, handshake, noaddr, ...
    master_id: str  # "-" for a master
    slots: tuple[tuple[int, int], ...]
    """Slot ranges served, first and last inclusive; migrating/importing marks left out."""

    @property
    def serves_slots(self) -> bool:
        return bool(self.slots)


def _slot_field(field: str) -> tuple[int, int] | None:
    if field.startswith("["):  # "[slot->-id]" migrating, "[slot-<-id]" importing
        return None
    first, _, last = field.partition("-")
    return int(first), int(last or first)


def parse_cluster_nodes(raw: str) -> list[NodeLine]:
    rows = []
    for line in raw.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        # address: ip:port@cport[,hostname[,aux...]] (cport since Redis 4)
        address, _, bus = fields[1].split(",", 1)[0].partition("@")
        ip, _, port = address.rpartition(":")
        slots = tuple(s for s in (_slot_field(f) for f in fields[8:]) if s is not None)
        rows.append(
            NodeLine(
                node_id=fields[0],
                address=(ip, int(port)),
                bus_port=int(bus) if bus else int(port) + 10000,
                flags=frozenset(fields[2].split(",")),
                master_id=fields[3],
                slots=slots,
            )
        )
    return rows


def parse_cluster_info(raw: str) -> dict[str, str]:
    """CLUSTER INFO's ``field:value`` lines as a dict of strings."""
    return dict(kv.split(":", 1) for kv in raw.splitlines() if ":" in kv)


def normalize_slots(raw: list[Any]) -> tuple[SlotRange, ...]:
    """CLUSTER SLOTS without node ids and metadata, replicas sorted: comparable across nodes."""
    ranges = []
    for entry in raw:
        master = (str(entry[2][0]), int(entry[2][1]))
        replicas = tuple(sorted((str(r[0]), int(r[1])) for r in entry[3:]))
        ranges.append((int(entry[0]), int(entry[1]), master, replicas))
    return tuple(sorted(ranges))


class NodeConn:
    """A synchronous connection to one node; no retries of its own (the callers poll)."""

    def __init__(self, address: Address) -> None:
        self.address = address
        self.client = redis.Redis(
            host=address[0],
            port=address[1],
            decode_responses=True,
            socket_connect_timeout=1.0,
            socket_timeout=5.0,
            retry=Retry(NoBackoff(), 0),
        )

    @property
    def name(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def cmd(self, *args: str | int) -> Any:
        """One command with its raw reply (redis-py's response callbacks key on the command
        name, so ``CLUSTER <sub>`` comes back unparsed)."""
        return self.client.execute_command(*args)  # type: ignore[no-untyped-call]

    def info(self) -> dict[str, str]:
        return parse_cluster_info(self.cmd("CLUSTER", "INFO"))

    def view(self) -> list[NodeLine]:
        return parse_cluster_nodes(self.cmd("CLUSTER", "NODES"))

    def myself(self) -> NodeLine:
        return next(line for line in self.view() if "myself" in line.flags)

    def close(self) -> None:
        self.client.close()


def agreed_slot_map(nodes: Sequence[NodeConn]) -> tuple[SlotRange, ...] | None:
    """The slot map when every node reports ``cluster_state:ok`` and all return the same
    ``CLUSTER SLOTS``; otherwise None."""
    maps = set()
    for node in nodes:
        if node.info().get("cluster_state") != "ok":
            return None
        maps.add(normalize_slots(node.cmd("CLUSTER", "SLOTS")))
    return maps.pop() if len(maps) == 1 else None


def describe_states(nodes: Sequence[NodeConn | None]) -> tuple[list[str], int | None]:
    """One line per node (its cluster_state and known nodes; None = a node down on purpose),
    and the index of the first node that does not answer or is not ok."""
    lines: list[str] = []
    worst: int | None = None
    for i, node in enumerate(nodes):
        if node is None:
            continue
        try:
            state = node.info()
        except redis.RedisError as e:
            lines.append(f"  {node.name}: {e}")
            worst = i if worst is None else worst
            continue
        lines.append(
            f"  {node.name}: cluster_state:{state.get('cluster_state')} "
            f"known_nodes:{state.get('cluster_known_nodes')} "
            f"slots_assigned:{state.get('cluster_slots_assigned')}"
        )
        if state.get("cluster_state") != "ok" and worst is None:
            worst = i
    return lines, worst
