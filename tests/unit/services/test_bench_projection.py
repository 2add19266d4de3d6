"""The S2 core projection: per-chunk CPU by role scaled to more streams at the same rate."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from fakeai.services.bench.driver import core_projection
from fakeai.services.bench.scenarios import Scenarios


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


def _row(level: int, edge_s: float, ok: bool) -> tuple[int, dict[str, float], dict[str, Any], bool]:
    """A level whose streams made 100 chunks/s each for 10 s, the edge using ``edge_s``."""
    return level, {"edge": edge_s}, {"chunks": level * 1_000, "wall_s": 10.0}, ok


def _projection(runs: list[tuple[int, dict[str, float], dict[str, Any], bool]]) -> list[str]:
    return Scenarios._projection(SimpleNamespace(PROJECT_TO=(10_000,)), runs)  # type: ignore[arg-type]


def test_s2_projects_from_the_largest_matching_row_and_from_the_heaviest() -> None:
    # 40 us per chunk at 100 streams (matched), 20 at 200 (matched), 10 at 1,000 (missed)
    text = "\n".join(
        _projection([_row(100, 4.0, True), _row(200, 4.0, True), _row(1000, 10.0, False)])
    )

    assert (
        "From the 200-stream row (the largest that matched the profile; µs per chunk: edge 20.0)"
        in text
    )
    assert "- 10,000 streams (1,000,000 chunks/s): edge 20.0; 20.0 cores in all" in text
    assert "From the 1000-stream row (the heaviest; µs per chunk: edge 10.0)" in text
    assert "- 10,000 streams (1,000,000 chunks/s): edge 10.0; 10.0 cores in all" in text
    assert "From the 100-stream row" not in text


def test_s2_projection_when_nothing_matched_or_one_row() -> None:
    none = "\n".join(_projection([_row(100, 4.0, False), _row(1000, 10.0, False)]))
    assert "From the 100-stream row" not in none
    assert "From the 1000-stream row (the heaviest;" in none

    one = "\n".join(_projection([_row(100, 4.0, True)]))
    assert one.count("From the ") == 1
    assert "From the 100-stream row (the largest that matched the profile;" in one
    assert _projection([]) == []
