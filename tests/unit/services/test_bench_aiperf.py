"""The AIPerf recipe's command, and its reading of a recorded AIPerf export against what was
asked (no AIPerf run here: ``data/aiperf-0.13.0-profile_export_aiperf.json`` is the summary
export of a real run, AIPerf 0.13.0 at concurrency 16 asking 200 ms TTFT / 20 ms ITL)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from fakeai.services.bench.aiperf import (
    Asked,
    aiperf_command,
    compare,
    late_side,
    read_export,
    table,
)
from fakeai.services.bench.aiperf_install import BPE_CACHE_NAME

RECORDED = Path(__file__).parent / "data" / "aiperf-0.13.0-profile_export_aiperf.json"


def test_the_recorded_export_is_read() -> None:
    obs = read_export(RECORDED)
    assert (obs.requests, obs.errors) == (16, 0)
    assert obs.ttft["p50"] == pytest.approx(210.056, abs=1e-3)
    assert obs.ttft["p99"] == pytest.approx(213.952, abs=1e-3)
    assert obs.itl["p99"] == pytest.approx(20.657, abs=1e-3)
    assert obs.inter_chunk["p99"] == pytest.approx(41.126, abs=1e-3)
    # The TTFT splits into the client's sending and the wait for the first byte.
    assert obs.sending["p50"] + obs.waiting["p50"] == pytest.approx(obs.ttft["p50"], abs=1.0)


@pytest.mark.parametrize(
    ("asked", "match", "ttft_p50_dev"),
    [
        (Asked(ttft_ms=200, itl_ms=20), False, 0.0503),  # median 5.03 % late: just outside
        (Asked(ttft_ms=205, itl_ms=20), True, 0.0247),
        (Asked(ttft_ms=205, itl_ms=18), False, 0.0247),  # ITL 13 % long
        (Asked(ttft_ms=230, itl_ms=20), False, -0.0867),  # early counts too
    ],
)
def test_each_figure_is_compared_with_what_was_asked(
    asked: Asked, match: bool, ttft_p50_dev: float
) -> None:
    result = compare(read_export(RECORDED), asked)
    obs, target, dev = result["ttft_p50"]
    assert (obs, target) == (pytest.approx(210.056, abs=1e-3), asked.ttft_ms)
    assert dev == pytest.approx(ttft_p50_dev, abs=1e-4)
    assert result["match"] is match


def test_errors_or_a_missing_figure_are_no_match(tmp_path: Path) -> None:
    data = json.loads(RECORDED.read_text())
    data["error_summary"] = [{"error_details": {"code": 503, "type": "HTTP"}, "count": 2}]
    failed = tmp_path / "errors.json"
    failed.write_text(json.dumps(data))
    assert read_export(failed).errors == 2
    assert compare(read_export(failed), Asked(ttft_ms=205))["match"] is False
    del data["inter_token_latency"]
    data["error_summary"] = []
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps(data))
    result = compare(read_export(missing), Asked(ttft_ms=205))
    assert result["itl_p50"] == (None, 20.0, None)
    assert result["match"] is False


def test_a_file_that_is_not_an_aiperf_summary_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"ttft_ms": {"p50": 1}}))
    with pytest.raises(ValueError, match="not an AIPerf summary"):
        read_export(other)


def test_the_command_asks_the_timing_in_a_form_aiperf_keeps_as_text() -> None:
    cmd = aiperf_command(Path("aiperf"), "http://127.0.0.1:9", 16, Asked(), Path("out"))
    # AIPerf 0.13.0 turns "200" into an int and then refuses it as a header value.
    assert "X-FakeAI-TTFT-Ms:+200" in cmd
    assert "X-FakeAI-ITL-Ms:+20" in cmd
    assert cmd[cmd.index("--request-count") + 1] == "48"
    assert cmd[cmd.index("--tokenizer") + 1] == "o200k_base"
    assert "--use-server-token-count" in cmd  # ITL per token from the stream's usage
    assert "Accept-Encoding:identity" in cmd  # streams as a model server sends them
    assert "--warmup-request-count" not in cmd  # AIPerf refuses 0: none means no flag
    warm = aiperf_command(Path("aiperf"), "u", 16, Asked(warmup=16), Path("out"))
    assert warm[warm.index("--warmup-request-count") + 1] == "16"


def test_the_offline_tokenizer_file_has_tiktokens_cache_name() -> None:
    # tiktoken looks for sha1(url) of the o200k_base file in TIKTOKEN_CACHE_DIR.
    assert BPE_CACHE_NAME == "fb374d419588a4632f3f557e76b4b70aebbca790"


def test_the_table_shows_observed_against_asked() -> None:
    obs = read_export(RECORDED)
    row = {
        "concurrency": 16,
        "observed": asdict(obs),
        "compare": compare(obs, Asked()),
        "edge_ttft": {"p50": 0.2042, "p99": 0.2047, "max": 0.2051},
        "pipeline_lag": {"p99": 0.0041},
        "cpu_s": {"aiperf": 9.04, "server": 1.51},
    }
    lines = table([row])
    assert lines[0].startswith("| concurrency |")
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:4] == ["16", "16", "0", "210.1 / 200 (+5.0%)"]
    assert cells[8:] == [
        "5.4 / 10.6",
        "204.5 / 204.7",
        "204.2 / 204.7 / 205.1",
        "4.1",
        "9.0 / 1.5",
        "**no**",
    ]


@pytest.mark.parametrize(
    ("sending", "waiting", "side"),
    [(10.4, 205.8, "the client (AIPerf's own send)"), (41.4, 297.9, "the server side")],
)
def test_the_late_side_is_where_most_of_the_ttft_beyond_the_ask_went(
    sending: float, waiting: float, side: str
) -> None:
    row = {
        "concurrency": 16,
        "observed": {"sending": {"p50": sending}, "waiting": {"p50": waiting}},
        "edge_ttft": {"p99": 0.2042},
    }
    sentence = late_side(row, Asked())
    assert sentence.endswith(f"most of the delay is on {side}.")
    assert f"send took {sending:.1f} ms" in sentence
    assert "edge TTFT p99 was 204.2 ms" in sentence
    assert "did not report" in late_side({**row, "edge_ttft": {}}, Asked())
