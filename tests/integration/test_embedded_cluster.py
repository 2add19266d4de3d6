"""A real Redis Cluster on loopback (``fakeai.embedded_cluster``), on each server binary.

The constraint every cluster deployment of FakeAI Streams lives with: a multi-key command
(XREAD over several streams, MULTI, Lua) must stay within one hash slot. redis-py's
``RedisCluster`` refuses a cross-slot XREAD before sending it ("all keys must map to the same
key slot"), and a direct connection to the node that serves both slots gets the server's
``CROSSSLOT`` error. So one blocking XREAD can only combine keys that share a hash tag
(https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#hash-tags;
``shared/notes`` redis-faststream §2.5).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis
import redis.exceptions
from redis.cluster import RedisCluster
from tests.conftest import CLUSTER_FLAVORS, _delete_prefix, binary_of_flavor

from fakeai.cluster_form import ClusterFormError, form_cluster
from fakeai.cluster_topology import slot_ranges
from fakeai.embedded_cluster import EmbeddedCluster

pytestmark = [pytest.mark.redis, pytest.mark.timeout(30)]


@pytest.fixture(scope="module", params=CLUSTER_FLAVORS)
def three_masters(request: pytest.FixtureRequest) -> Iterator[EmbeddedCluster]:
    """One 3-master cluster per binary flavor, shared by this module's tests of that flavor."""
    with EmbeddedCluster(masters=3, binary=binary_of_flavor(request.param)) as cluster:
        yield cluster


@pytest.fixture
def rc(three_masters: EmbeddedCluster, key_prefix: str) -> Iterator[RedisCluster]:
    client = RedisCluster.from_url(three_masters.url)
    try:
        yield client
    finally:
        client.close()
        _delete_prefix(three_masters.url, key_prefix)


def _one_key_per_master(rc: RedisCluster, prefix: str) -> dict[int, str]:
    """Master port -> a key of a distinct hash tag that it serves."""
    by_master: dict[int, str] = {}
    for i in range(200):
        key = f"{prefix}:{{s{i}}}:chunks"
        by_master.setdefault(rc.get_node_from_key(key).port, key)
        if len(by_master) == 3:
            break
    return by_master


def test_keys_of_different_hash_tags_land_on_different_masters(
    three_masters: EmbeddedCluster, rc: RedisCluster, key_prefix: str
) -> None:
    masters = three_masters.masters()
    assert len(masters) == 3
    by_master = _one_key_per_master(rc, key_prefix)
    assert {("127.0.0.1", port) for port in by_master} == set(masters)
    for key in by_master.values():
        rc.set(key, key)
    # Ask each master directly: it holds its own key and redirects the others to their owner.
    for port in by_master:
        direct = redis.Redis(host="127.0.0.1", port=port)
        try:
            for owner, key in by_master.items():
                if owner == port:
                    assert direct.get(key) == key.encode()
                else:
                    with pytest.raises(redis.exceptions.ResponseError, match=f":{owner}$"):
                        direct.get(key)  # MOVED <slot> 127.0.0.1:<owner>
        finally:
            direct.close()


def test_a_cluster_client_sets_and_gets_across_all_masters(
    three_masters: EmbeddedCluster, rc: RedisCluster, key_prefix: str
) -> None:
    keys = [f"{key_prefix}:{{s{i}}}:meta" for i in range(30)]
    for i, key in enumerate(keys):
        assert rc.set(key, str(i))
    assert [rc.get(key) for key in keys] == [str(i).encode() for i in range(30)]
    owners = {("127.0.0.1", rc.get_node_from_key(key).port) for key in keys}
    assert owners == set(three_masters.masters())


def test_xread_over_keys_of_different_slots_is_refused_with_crossslot(
    rc: RedisCluster, key_prefix: str
) -> None:
    same_tag = [f"{key_prefix}:{{a}}:chunks", f"{key_prefix}:{{a}}:events"]
    for key in same_tag:
        rc.xadd(key, {"t": "x"})
    assert len(rc.xread(dict.fromkeys(same_tag, "0-0"))) == 2  # one slot: allowed
    # Two keys of different slots that one master serves, so the server answers, not MOVED.
    first = f"{key_prefix}:{{b0}}:chunks"
    owner = rc.get_node_from_key(first)
    other = next(
        key
        for key in (f"{key_prefix}:{{b{i}}}:chunks" for i in range(1, 500))
        if rc.get_node_from_key(key).port == owner.port and rc.keyslot(key) != rc.keyslot(first)
    )
    for key in (first, other):
        rc.xadd(key, {"t": "x"})
    streams = {first: "0-0", other: "0-0"}
    with pytest.raises(redis.exceptions.RedisClusterException, match="same key slot"):
        rc.xread(streams)
    direct = redis.Redis(host="127.0.0.1", port=owner.port)
    try:
        with pytest.raises(redis.exceptions.ClusterCrossSlotError, match="same slot"):
            direct.xread(streams)
    finally:
        direct.close()


def test_delete_prefix_cleans_every_master(cluster_url: str, key_prefix: str) -> None:
    rc = RedisCluster.from_url(cluster_url)
    try:
        keys = [f"{key_prefix}:{{s{i}}}:chunks" for i in range(30)]
        for key in keys:
            rc.xadd(key, {"t": "x"})
        bystander = f"{key_prefix}x:{{s0}}:chunks"  # same slot, other prefix: must stay
        rc.xadd(bystander, {"t": "x"})
        _delete_prefix(cluster_url, key_prefix)
        assert [key for key in keys if rc.exists(key)] == []
        assert rc.exists(bystander) == 1
        rc.delete(bystander)
    finally:
        rc.close()


def test_delete_prefix_on_a_single_server_still_works(redis_url: str, key_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(f"{key_prefix}:a", "1")
        client.set(f"{key_prefix}x:a", "1")
        _delete_prefix(redis_url, key_prefix)
        assert (client.exists(f"{key_prefix}:a"), client.exists(f"{key_prefix}x:a")) == (0, 1)
        client.delete(f"{key_prefix}x:a")
    finally:
        client.close()


@pytest.mark.slow
@pytest.mark.parametrize("cluster", CLUSTER_FLAVORS, indirect=True)
def test_a_killed_master_is_replaced_by_its_replica(
    cluster: EmbeddedCluster, key_prefix: str
) -> None:
    rc = RedisCluster.from_url(cluster.url)
    try:
        key = f"{key_prefix}:{{a}}:chunks"
        rc.set(key, "before")
        old = rc.get_node_from_key(key).port
        direct = redis.Redis(host="127.0.0.1", port=old)
        try:
            assert direct.wait(1, 5000) == 1  # the replica has the write before the crash
        finally:
            direct.close()

        cluster.kill(old)
        new = cluster.failover_wait(old, timeout_s=20)

        roles = {node.port: node.role for node in cluster.nodes}
        assert (roles[old], roles[new]) == ("down", "master")
        assert ("127.0.0.1", new) in cluster.masters()
        assert ("127.0.0.1", old) not in cluster.masters()
        # The same client follows the new topology (it re-reads the slots on a dead node).
        assert rc.get(key) == b"before"
        assert rc.set(key, "after")
        assert rc.get(key) == b"after"
        assert rc.get_node_from_key(key).port == new
    finally:
        rc.close()


# -- forming a cluster (fakeai.cluster_form): the commands docker-compose's cluster-init runs


def _form_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fakeai.cluster_form", "--timeout", "20", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_cli_forms_spawned_nodes_with_replicas_and_a_second_run_changes_nothing() -> None:
    cluster = EmbeddedCluster(masters=3, replicas=1)
    cluster.start(form=False)
    try:
        addresses = [f"127.0.0.1:{n.port}" for n in cluster.nodes]
        first = _form_cli("--replicas-per-master", "1", *addresses)
        assert first.returncode == 0, first.stderr
        assert "ADDSLOTSRANGE" in first.stdout
        assert "formed in" in first.stdout
        cluster.wait_ok()
        roles = [n.role for n in cluster.nodes]
        assert roles == ["master"] * 3 + ["replica"] * 3
        assert len(cluster.masters()) == 3

        again = _form_cli("--replicas-per-master", "1", *addresses)
        assert again.returncode == 0, again.stderr
        assert again.stdout.startswith("already a cluster: 3 masters, 3 replicas"), again.stdout
        assert "sent " not in again.stdout
    finally:
        cluster.stop()


def test_form_cluster_completes_a_formation_cut_short() -> None:
    cluster = EmbeddedCluster(masters=3)
    cluster.start(form=False)
    try:
        ports = [n.port for n in cluster.nodes]
        first = redis.Redis(host="127.0.0.1", port=ports[0], decode_responses=True)
        try:  # a first attempt that stopped after the first master's slots and one MEET
            first.execute_command("CLUSTER", "ADDSLOTSRANGE", *slot_ranges(3)[0])
            bus = cluster.nodes[1].bus_port
            first.execute_command("CLUSTER", "MEET", "127.0.0.1", ports[1], bus)
        finally:
            first.close()
        formed = form_cluster([("127.0.0.1", p) for p in ports], timeout_s=20)
        assert not formed.already
        assert not [a for a in formed.actions if f":{ports[0]} CLUSTER ADDSLOTSRANGE" in a]
        assert [n.slots for n in formed.nodes] == [(r,) for r in slot_ranges(3)]
        cluster.wait_ok()
    finally:
        cluster.stop()


def test_form_cluster_leaves_a_formed_cluster_as_it_is(three_masters: EmbeddedCluster) -> None:
    masters = three_masters.masters()
    formed = form_cluster(masters, timeout_s=10)
    assert formed.already
    assert formed.actions == ()
    assert [n.role for n in formed.nodes] == ["master"] * 3


def test_form_cluster_refuses_nodes_of_a_cluster_it_was_not_given_whole(
    three_masters: EmbeddedCluster,
) -> None:
    masters = three_masters.masters()
    with pytest.raises(ClusterFormError, match="belongs to a cluster with other nodes") as exc:
        form_cluster(masters[:2], timeout_s=10)
    assert exc.value.node == masters[0]
    three_masters.wait_ok()  # nothing was changed


def test_the_cli_refuses_a_server_not_in_cluster_mode(redis_url: str) -> None:
    address = redis_url.removeprefix("redis://").split("/")[0]
    done = _form_cli(address)
    assert done.returncode == 1
    assert "is not a cluster node" in done.stderr
    assert "cluster-enabled yes" in done.stderr
