"""The S2 core projection: per-chunk CPU by role scaled to more streams at the same rate."""

from __future__ import annotations

from fakeai.services.bench.driver import core_projection


def test_cores_scale_with_the_chunks_the_target_streams_would_make() -> None:
    # 100 streams made 100,000 chunks in 10 s: 100 chunks/s per stream. Per chunk the edge used
    # 10 us and the producer 20 us.
    cpu = {"edge": 1.0, "producer": 2.0}
    res = {"chunks": 100_000, "wall_s": 10.0}

    lines = core_projection(cpu, res, 100, (10_000, 100_000))

    assert lines == [
        "10,000 streams (1,000,000 chunks/s): producer 20.0, edge 10.0; 30.0 cores in all",
        "100,000 streams (10,000,000 chunks/s): producer 200.0, edge 100.0; 300.0 cores in all",
    ]


def test_a_run_that_delivered_nothing_projects_nothing() -> None:
    assert core_projection({"edge": 1.0}, {"chunks": 0, "wall_s": 10.0}, 100, (10_000,)) == []
