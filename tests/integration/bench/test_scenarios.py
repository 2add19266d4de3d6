"""The scenario driver end to end: a real `fakeai-streams up`, measured and stopped by PID."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fakeai.services.bench import procs, scenarios

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_quick_resume_scenario_writes_its_table_and_stops_every_process(tmp_path: Path) -> None:
    out = tmp_path / "BENCH.md"
    before = {p.pid for p in procs.descendants(os.getpid())}  # e.g. the session's Redis
    rc = scenarios.main(["--out", str(out), "--quick", "--only", "S3"])
    text = out.read_text()
    assert rc == 0, text
    assert text.startswith("# FakeAI Streams benchmarks")
    assert "- Command: `python -m fakeai.services.bench.scenarios" in text
    assert "CPUs (" in text
    assert "## S3 resume" in text
    table = text.split("## S3 resume", 1)[1]
    # Per timing: 20 streams ok, 0 errors, 10 resumes each, ..., 0 gaps, 0 duplicates, 0 mismatches
    rows = [line for line in table.splitlines() if "profile |" in line or "(stress) |" in line]
    assert len(rows) == 2, table
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1:4] == ["20", "0", "200"], row
        assert cells[-4:-1] == ["0", "0", "0"], row
        assert "producer" in cells[-1], row
    assert [p for p in procs.descendants(os.getpid()) if p.pid not in before] == []


def test_unknown_scenario_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        scenarios.main(["--out", str(tmp_path / "x.md"), "--only", "S1,S99"])
    assert exc.value.code == 2
    assert "--only: expected names from S1,S2,S3,S4,S5,S6,S7" in capsys.readouterr().err


@pytest.mark.parametrize("levels", ["0,5", "x", ","])
def test_s2_levels_must_be_positive_integers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], levels: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        scenarios.main(["--out", str(tmp_path / "x.md"), "--only", "S2", "--s2-levels", levels])
    assert exc.value.code == 2
    assert f"--s2-levels: expected positive integers like 500,1000, got {levels!r}" in (
        capsys.readouterr().err
    )


@pytest.mark.timeout(180)  # the floor probe, a stack, 60 paced requests
def test_quick_latency_scenario_states_the_floor_and_projects_cores(tmp_path: Path) -> None:
    out = tmp_path / "BENCH.md"
    before = {p.pid for p in procs.descendants(os.getpid())}
    rc = scenarios.main(["--out", str(out), "--quick", "--only", "S2", "--s2-levels", "10"])
    text = out.read_text()
    assert rc == 0, text
    section = text.split("## S2 latency fidelity (gpt-4o profile)", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| 10 |")]
    assert len(rows) == 1, section
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1:3] == ["60", "0"], rows[0]  # 60 requests, 0 errors
    assert "From the 10-stream row (" in section
    assert "- 10,000 streams (" in section
    assert "The machine's floor, measured before this section's stack started" in section
    assert "µs over 100 keys" in section
    assert "1,000 keys" not in section  # --quick stays quick with --s2-levels: a short probe
    assert "What limits it: the cores." in section
    assert [p for p in procs.descendants(os.getpid()) if p.pid not in before] == []
