"""S7 scale-out: the report and the estimate on paper (pure), and the bench's Redis figures read
from every node of a real cluster and from a single server."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from fakeai.services.bench import procs
from fakeai.services.bench.procs import RedisNode
from fakeai.services.bench.scaleout import NodeDelta, Row, estimate, node_deltas, report


def _node(
    address: str, cpu_s: float, commands: int, usec: dict[str, int] | None = None
) -> NodeDelta:
    return NodeDelta(address, cpu_s, commands, 100, usec or {})


def _row(redis_kind: Any, workers: int, nodes: list[NodeDelta], chunks: int = 100_000) -> Row:
    res = {
        "chunks": chunks,
        "chunks_per_s": chunks / 10,
        "errors": 0,
        "machine_busy": 0.97,
    }
    cpu = {"edge": 1.0, "producer": 0.8, "metrics": 0.1}  # 10, 8, 1 µs per chunk
    processes = {"edge": workers, "producer": workers, "metrics": 1}
    return Row(redis_kind, workers, res, cpu, processes, nodes)


SINGLE = _row("single", 2, [_node("127.0.0.1:1", 0.6, 150_000)])
# 3 masters: 2 µs, 2 µs and 4 µs per chunk; the third node's extra is mostly XADD.
CLUSTER = _row(
    "cluster",
    2,
    [
        _node("127.0.0.1:1", 0.2, 60_000, {"xadd": 100_000, "xreadgroup": 50_000}),
        _node("127.0.0.1:2", 0.2, 60_000, {"xadd": 100_000, "xreadgroup": 50_000}),
        _node("127.0.0.1:3", 0.4, 90_000, {"xadd": 250_000, "xreadgroup": 50_000}),
    ],
)


def test_a_row_gives_costs_per_chunk_per_node() -> None:
    assert CLUSTER.name == "cluster, 2+2"
    assert CLUSTER.node_us == pytest.approx([2.0, 2.0, 4.0])
    assert CLUSTER.node_commands == pytest.approx([0.6, 0.6, 0.9])
    assert CLUSTER.server_us == pytest.approx(19.0 + 8.0)
    cells = CLUSTER.cells()
    assert cells[:4] == ["cluster, 2+2", 3, 10_000.0, 0]
    assert cells[5] == "edge 10.0, metrics 1.0, producer 8.0, redis 8.0"
    assert cells[6:9] == ["2.00 / 2.00 / 4.00", "0.60 / 0.60 / 0.90", "100 / 100 / 100"]


def test_estimate_scales_the_shared_part_and_keeps_the_hot_part_on_one_node() -> None:
    text = "\n".join(estimate([SINGLE, CLUSTER], nproc=2))
    # shared 6 µs over N nodes + 2 µs on the busiest: 1e6 / (6/N + 2)
    assert "250,000 chunks/s at N = 3" in text
    assert "333,333 chunks/s at N = 6" in text
    assert "400,000 chunks/s at N = 12" in text
    assert "never more than 500,000 chunks/s" in text
    assert "XADD 1.50 µs" in text  # the busiest node's extra over the others' mean
    assert '(row "cluster, 2+2")' in text
    # the single server: 6 µs per chunk; the cluster 8/6 = 1.33x as much
    assert '6.0 µs per chunk (row "single, 2+2")' in text
    assert "1.33x" in text
    assert '100% of row "single, 2+2"' in text
    # per core: edges 2 x 1e6/10, producers 2 x 1e6/8, metrics 1e6/1, busiest node 1e6/4
    assert "the first to fill up is the 2 edges" in text
    assert "at 200,000 chunks/s" in text
    assert "the 1 metrics consumer at 1,000,000" in text
    assert "keys per node 100 / 100 / 100 in row" in text
    assert "shares 2 cores with the load generator" in text


def test_estimate_says_so_when_no_cluster_row_delivered() -> None:
    failed = _row("cluster", 1, [], chunks=0)
    assert estimate([SINGLE, failed]) == [
        "No cluster row delivered chunks, so there is no per-node cost to scale."
    ]


def test_report_lists_rows_failures_and_errors() -> None:
    broken = _row("cluster", 1, [_node("127.0.0.1:1", 0.1, 10)])
    broken.res.update(errors=3, errors_by_kind={"http": 3}, error_samples={"http": "500"})
    lines = report([SINGLE, broken], ['"cluster, 2+2": `RuntimeError()`'], 3.0)
    text = "\n".join(lines)
    assert text.startswith("## S7 scale-out")
    assert "| single, 2+2 | 1 |" in text
    assert 'Errors of row "cluster, 1+1": http 3; first: `500`' in text
    assert 'Row failed: "cluster, 2+2": `RuntimeError()`' in text


def test_node_deltas_subtract_per_node_and_keep_the_last_key_count() -> None:
    before = [RedisNode("a:1", "master", 1.0, 10, 5, {"xadd": 100})]
    after = [
        RedisNode("a:1", "master", 1.5, 30, 7, {"xadd": 160, "get": 4}),
        RedisNode("b:2", "master", 0.5, 5, 1, {}),
    ]
    assert node_deltas(before, after) == [
        NodeDelta("a:1", 0.5, 20, 7, {"xadd": 60, "get": 4}),
        NodeDelta("b:2", 0.5, 5, 1, {}),
    ]


# -- the bench's Redis reads, on real servers


@pytest.mark.redis
def test_redis_nodes_reads_every_master_of_a_cluster(cluster_url: str, key_prefix: str) -> None:
    rc = RedisCluster.from_url(cluster_url)
    try:
        keys = [f"{key_prefix}:{{s{i}}}:k" for i in range(30)]
        before = procs.redis_nodes(cluster_url)
        for key in keys:
            rc.set(key, "1")
        after = procs.redis_nodes(cluster_url)
        owners = {f"127.0.0.1:{rc.get_node_from_key(k).port}" for k in keys}
    finally:
        for key in keys:
            rc.delete(key)
        rc.close()
    assert len(after) == 3
    assert {n.role for n in after} == {"master"}
    assert owners == {n.address for n in after}  # the keys spread over all three
    deltas = node_deltas(before, after)
    assert all("set" in n.usec_by_command for n in after)  # INFO commandstats of each node
    assert sum(d.commands for d in deltas) >= len(keys)
    assert all(n.keys >= 1 for n in after)
    cpu = procs.redis_cpu_seconds(cluster_url)
    assert cpu is not None
    assert cpu >= sum(n.cpu_s for n in before)


@pytest.mark.redis
def test_redis_nodes_reads_a_single_server(redis_url: str) -> None:
    (node,) = procs.redis_nodes(redis_url)
    client = redis.Redis.from_url(redis_url)
    try:
        assert node.address.endswith(f":{client.connection_pool.connection_kwargs['port']}")
    finally:
        client.close()
    assert node.role == "single"
    assert node.commands > 0
    assert procs.redis_cpu_seconds(redis_url) is not None


def test_redis_nodes_of_a_server_that_does_not_answer_is_empty() -> None:
    from fakeai.embedded_redis import free_port

    url = f"redis://127.0.0.1:{free_port()}"
    assert procs.redis_nodes(url) == []
    assert procs.redis_cpu_seconds(url) is None
