"""fakeai.cluster_form without a server: parsing, planning, and the compose file that runs it.

``docker-compose.yml`` cannot run here (no Docker engine), so its ``cluster`` profile is checked
on paper: the nodes ``cluster-init`` hands to ``python -m fakeai.cluster_form`` are exactly the
cluster nodes the file defines, each announcing its own service name, and every FakeAI service
of the profile starts after that formation with a URL naming one of them.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from fakeai.cluster_form import parse_args, plan_addresses
from fakeai.cluster_topology import SLOTS, parse_cluster_info, parse_cluster_nodes, slot_ranges

ROOT = Path(__file__).resolve().parents[2]

# Shapes of CLUSTER NODES lines (https://redis.io/docs/latest/commands/cluster-nodes/): a fresh
# node before any MEET, a master with a hostname and a migrating slot, a replica.
NODES = """\
a1 :7000@17000 myself,master - 0 0 0 connected
b2 10.0.0.2:6379@16379,redis-c2 master - 0 1700000000000 2 connected 0-5460 7000 [7001->-c3]
c3 10.0.0.3:6379@16379,redis-c4 slave b2 0 1700000000000 2 connected
"""


def test_cluster_nodes_lines_parse_into_address_bus_port_flags_and_slots() -> None:
    fresh, master, replica = parse_cluster_nodes(NODES)
    assert (fresh.address, fresh.bus_port, fresh.slots) == (("", 7000), 17000, ())
    assert "myself" in fresh.flags
    assert master.address == ("10.0.0.2", 6379)
    assert master.slots == ((0, 5460), (7000, 7000))  # the migrating mark is not a range
    assert (replica.master_id, replica.serves_slots) == ("b2", False)


def test_cluster_info_parses_into_strings() -> None:
    info = parse_cluster_info("cluster_state:ok\r\ncluster_slots_assigned:16384\r\n")
    assert info == {"cluster_state": "ok", "cluster_slots_assigned": "16384"}


@pytest.mark.parametrize("masters", [1, 2, 3, 5, 7])
def test_slot_ranges_cover_every_slot_once_in_order(masters: int) -> None:
    ranges = slot_ranges(masters)
    assert len(ranges) == masters
    assert ranges[0][0] == 0
    assert ranges[-1][1] == SLOTS - 1
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))


@pytest.mark.parametrize(
    ("count", "per_master", "masters", "replica_of"),
    [
        (3, 0, 3, []),
        (6, 1, 3, [0, 1, 2]),
        (9, 2, 3, [0, 1, 2, 0, 1, 2]),
        (1, 0, 1, []),
    ],
)
def test_plan_addresses_puts_masters_first_and_spreads_replicas(
    count: int, per_master: int, masters: int, replica_of: list[int]
) -> None:
    addresses = [("h", 7000 + i) for i in range(count)]
    got_masters, replicas = plan_addresses(addresses, per_master)
    assert got_masters == addresses[:masters]
    assert [a for a, _ in replicas] == addresses[masters:]
    assert [m for _, m in replicas] == replica_of


@pytest.mark.parametrize(("count", "per_master"), [(5, 1), (0, 0), (4, 2)])
def test_plan_addresses_refuses_a_count_that_does_not_divide(count: int, per_master: int) -> None:
    with pytest.raises(ValueError, match="multiple of"):
        plan_addresses([("h", 7000 + i) for i in range(count)], per_master)


def test_the_cli_parses_host_names_and_ipv6_addresses() -> None:
    args = parse_args(["--replicas-per-master", "1", "redis-c1:6379", "[::1]:7000"])
    assert args.masters == [("redis-c1", 6379)]
    assert args.replicas == [(("::1", 7000), 0)]


def test_the_cli_rejects_an_address_without_a_port(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["redis-c1"])
    assert "expected HOST:PORT" in capsys.readouterr().err


# -- docker-compose.yml


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")  # PyYAML: not a dependency of the project
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def _profile(svc: dict[str, Any]) -> list[str]:
    return list(svc.get("profiles", []))


def test_the_default_deployment_stays_one_redis_without_a_profile(compose: dict[str, Any]) -> None:
    default = {name: svc for name, svc in compose["services"].items() if not _profile(svc)}
    assert sorted(default) == ["edge-1", "edge-2", "metrics", "producer-1", "producer-2", "redis"]
    for name, svc in default.items():
        if name != "redis":
            assert svc["environment"]["FAKEAI_REDIS_URL"].startswith("redis://redis:6379")


def test_cluster_init_forms_exactly_the_cluster_nodes_of_the_profile(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    nodes = sorted(
        name
        for name, svc in services.items()
        if _profile(svc) == ["cluster"] and str(svc.get("image", "")).startswith("redis:7")
    )
    assert len(nodes) == 6
    init = services["cluster-init"]
    assert _profile(init) == ["cluster"]
    assert init["entrypoint"] == ["python", "-m", "fakeai.cluster_form"]
    args = parse_args(init["command"])
    assert [host for host, _ in args.nodes] == nodes
    assert {port for _, port in args.nodes} == {6379}
    assert len(args.masters) == 3
    assert [m for _, m in args.replicas] == [0, 1, 2]
    assert init["depends_on"] == {n: {"condition": "service_healthy"} for n in nodes}
    for name in nodes:
        command = services[name]["command"]
        assert command[:2] == ["redis-server", "/usr/local/etc/redis/redis.conf"]
        announce = command.index("--cluster-announce-hostname")
        assert command[announce + 1] == name
        mounts = services[name]["volumes"]
        assert "./infra/redis-cluster.conf:/usr/local/etc/redis/redis.conf:ro" in mounts
        assert f"{name}-data:/data" in mounts
        assert f"{name}-data" in compose["volumes"]


def test_the_cluster_config_enables_cluster_mode_on_the_port_cluster_init_uses() -> None:
    lines = {
        line.split(None, 1)[0]: line.split(None, 1)[1].strip()
        for line in (ROOT / "infra" / "redis-cluster.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert lines["cluster-enabled"] == "yes"
    assert lines["port"] == "6379"
    assert lines["cluster-preferred-endpoint-type"] == "hostname"
    assert lines["bind"] == "0.0.0.0"


def test_cluster_services_start_after_formation_and_name_a_node(compose: dict[str, Any]) -> None:
    services = compose["services"]
    nodes = {f"redis-c{i}" for i in range(1, 7)}
    fakeai = {
        name: svc
        for name, svc in services.items()
        if _profile(svc) == ["cluster"] and "build" in svc and name != "cluster-init"
    }
    roles = sorted(svc["command"][0] for svc in fakeai.values())
    assert roles == ["edge", "edge", "metrics", "producer", "producer"]
    for svc in fakeai.values():
        assert svc["depends_on"] == {
            "cluster-init": {"condition": "service_completed_successfully"}
        }
        url = svc["environment"]["FAKEAI_REDIS_URL"]
        assert url.removeprefix("redis://").split(":")[0] in nodes
        assert "FAKEAI_REDIS_CLUSTER" not in svc["environment"]  # detected by itself


def test_no_two_services_publish_the_same_host_port(compose: dict[str, Any]) -> None:
    published = [
        port.split(":")[0] for svc in compose["services"].values() for port in svc.get("ports", [])
    ]
    assert len(published) == len(set(published)) == 4
