"""`fakeai-streams bench` against a tiny OpenAI-like SSE app under real uvicorn.

Each test runs the bench's real CLI entry point (``client.main``) and reads the ``--json`` line.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.integration.bench.sse_app import AppState, Mode, create_app
from tests.support.servers import run_asgi

from fakeai.embedded_redis import free_port
from fakeai.services.bench import client

pytestmark = pytest.mark.e2e

REQUIRED = ("chunks_per_s", "requests_per_s", "errors", "ttft_ms", "itl_ms")
PCTS = ("p50", "p90", "p99", "max")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    client.add_arguments(parser)
    return parser.parse_args(argv)


Bench = Callable[..., tuple[int, dict[str, Any]]]


@pytest.fixture
def bench(capsys: pytest.CaptureFixture[str]) -> Bench:
    """Run the bench with ``--json``; return (exit code, the parsed last stdout line)."""

    def run(url: str, *argv: str) -> tuple[int, dict[str, Any]]:
        rc = client.main(parse(["--url", url, "--json", "--timeout", "10", *argv]))
        out = capsys.readouterr().out.strip().splitlines()
        assert out, "no output"
        return rc, json.loads(out[-1])

    return run


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[str, AppState]]]:
    stack: list[Any] = []

    def start(mode: Mode = "ok", **kw: Any) -> tuple[str, AppState]:
        state = AppState(mode=mode, **kw)
        cm = run_asgi(create_app(state))
        url = cm.__enter__()
        stack.append(cm)
        return url, state

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


def test_counts_chunks_tokens_and_requests(bench: Bench, serve: Any) -> None:
    url, state = serve(tokens=7)
    rc, res = bench(url, "--concurrency", "4", "--requests", "20", "--max-tokens", "7")
    assert rc == 0
    assert state.posts == 20
    assert res["requests_ok"] == 20
    assert res["errors"] == 0
    # role + 7 content + finish chunk; [DONE] is not a chunk
    assert res["chunks"] == 20 * 9
    assert res["chunks_per_request"] == 9
    assert res["output_tokens"] == 20 * 7
    assert res["ttft_ms"]["count"] == 20
    assert res["headers_ms"]["count"] == 20
    assert res["headers_ms"]["max"] <= res["ttft_ms"]["max"]
    assert res["itl_ms"]["count"] == 20 * 6
    assert res["chunks_per_s"] > 0
    assert res["requests_per_s"] > 0
    assert res["client_cpu_us_per_chunk"] > 0
    # The load each request met: 4 workers, so between 1 and 4 in flight, 20 requests in all.
    loads = dict(res["in_flight_at_send"])
    assert sum(loads.values()) == 20
    assert set(loads) <= {1, 2, 3, 4}
    assert loads.get(4, 0) > 0


def test_ttft_and_itl_follow_the_servers_fixed_delays(bench: Bench, serve: Any) -> None:
    url, _ = serve(tokens=20, ttft_s=0.2, itl_s=0.02)
    rc, res = bench(url, "--concurrency", "2", "--requests", "6")
    assert rc == 0
    ttft, itl, e2e = res["ttft_ms"], res["itl_ms"], res["e2e_ms"]
    # Never faster than the server's sleeps: TTFT, 19 ITLs, and both end to end.
    assert ttft["p50"] >= 200, ttft
    assert itl["p50"] >= 20, itl
    assert itl["count"] == 6 * 19
    assert e2e["p50"] >= 200 + 19 * 20, e2e
    # What each figure measures, as ratios of medians rather than bounds a loaded machine can
    # break: TTFT ends at the first token, not at the stream's end (200 vs 580 ms), and an
    # ITL is the gap between two tokens, not the time since the request or the first token
    # (20 vs 200 ms; ~200 ms as the median of times since the first token).
    assert ttft["p50"] < e2e["p50"] / 2, (ttft, e2e)
    assert itl["p50"] < ttft["p50"] / 2, (itl, ttft)


def test_json_last_line_has_the_contract_keys(bench: Bench, serve: Any) -> None:
    url, _ = serve()
    rc, res = bench(url, "--requests", "3", "--no-latency", "--warmup", "1")
    assert rc == 0
    for key in REQUIRED:
        assert key in res
    for key in ("ttft_ms", "itl_ms"):
        assert all(isinstance(res[key][p], float) for p in PCTS), res[key]
    assert res["ttft_override_ms"] == 0
    assert res["itl_override_ms"] == 0


def test_duration_mode_runs_for_the_duration(bench: Bench, serve: Any) -> None:
    url, _ = serve(tokens=3, itl_s=0.005)
    rc, res = bench(url, "--concurrency", "3", "--duration", "0.5")
    assert rc == 0
    assert res["wall_s"] >= 0.5
    assert res["requests_ok"] >= 3
    assert res["chunks"] == res["requests_ok"] * 5


def test_unreachable_url_counts_connect_errors_and_fails(bench: Bench) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    rc, res = bench(url, "--concurrency", "2", "--requests", "4")
    assert rc == 1
    assert res["errors"] == 4
    assert res["errors_by_kind"] == {"connect": 4}
    assert res["requests_ok"] == 0
    assert res["chunks_per_s"] == 0


def test_non_streaming_server_is_an_error(bench: Bench, serve: Any) -> None:
    url, _ = serve("json")
    rc, res = bench(url, "--requests", "3")
    assert rc == 1
    assert res["errors_by_kind"] == {"not_streaming": 3}


def test_http_500_mid_run_is_counted_and_excluded_from_throughput(bench: Bench, serve: Any) -> None:
    url, _ = serve("fail_every_3rd", tokens=4)
    rc, res = bench(url, "--requests", "9")
    assert rc == 1
    assert res["errors_by_kind"] == {"http_status": 3}
    assert res["http_statuses"] == {"500": 3}
    assert res["requests_ok"] == 6
    assert res["chunks"] == 6 * 6  # only the successful requests count


def test_stream_without_done_is_an_error(bench: Bench, serve: Any) -> None:
    url, _ = serve("no_done")
    rc, res = bench(url, "--requests", "2")
    assert rc == 1
    assert res["errors_by_kind"] == {"no_done": 2}
    assert res["chunks"] == 0


def test_error_frame_mid_stream_is_an_error(bench: Bench, serve: Any) -> None:
    url, _ = serve("error_frame")
    rc, res = bench(url, "--requests", "2")
    assert rc == 1
    assert res["errors_by_kind"] == {"stream_error": 2}
    assert "failed" in res["error_samples"]["stream_error"]


def test_stalled_stream_times_out_instead_of_hanging(serve: Any, capsys: Any) -> None:
    url, _ = serve("stall")
    rc = client.main(parse(["--url", url, "--json", "--timeout", "0.5", "--requests", "2"]))
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 1
    assert res["errors_by_kind"] == {"timeout": 2}
    # Ended by the 0.5 s deadline: never sooner, and long before the default deadline (the
    # flag ignored) would have ended it; a quarter of it leaves seconds for a loaded machine.
    default_s = parse(["--url", url]).timeout
    assert 0.5 <= res["wall_s"] < default_s / 4, res["wall_s"]


def test_resume_every_k_reconnects_without_gaps_or_duplicates(bench: Bench, serve: Any) -> None:
    url, state = serve(tokens=10)
    rc, res = bench(url, "--requests", "3", "--resume-every", "3", "--concurrency", "3")
    assert rc == 0, res
    # 12 chunks per stream, dropped after 3, 6, 9 and 12 -> 4 resumes (the last gets [DONE])
    assert res["resume"]["resumes"] == 3 * 4
    assert state.resumes == 3 * 4
    assert state.replays == 3  # the text check
    assert res["resume"]["gaps"] == 0
    assert res["resume"]["duplicates"] == 0
    assert res["resume"]["text_mismatches"] == 0
    assert res["resume"]["latency_ms"]["count"] == 3 * 4
    assert res["chunks"] == 3 * 12


def test_ramp_staggers_the_workers_start(bench: Bench, serve: Any) -> None:
    url, _ = serve(tokens=3)
    rc, res = bench(url, "--concurrency", "4", "--requests", "4", "--ramp-s", "2")
    assert rc == 0, res
    assert res["ramp_s"] == 2
    # Workers start 0.5 s apart; each request takes milliseconds: one in flight at a time.
    assert dict(res["in_flight_at_send"]) == {1: 4}
    assert res["wall_s"] >= 1.5


def test_resume_delay_keeps_the_client_away_before_each_resume(bench: Bench, serve: Any) -> None:
    url, state = serve(tokens=10)
    rc, res = bench(
        url, "--requests", "1", "--resume-every", "3", "--resume-delay-ms", "300", "--no-verify"
    )
    assert rc == 0, res
    assert res["resume_delay_ms"] == 300
    assert state.resumes == 4
    # Four times away for 300 ms; the resume latency itself excludes the time away: counted in,
    # every one of the four would be >= 300 ms, so would their median. A loaded machine may
    # delay a resume or two, not most.
    assert res["e2e_ms"]["max"] >= 4 * 300
    assert res["resume"]["latency_ms"]["p50"] < 300, res["resume"]["latency_ms"]


def test_resume_detects_an_injected_duplicate(bench: Bench, serve: Any) -> None:
    url, _ = serve("resume_dup", tokens=10)
    rc, res = bench(url, "--requests", "2", "--resume-every", "4")
    assert rc == 1
    assert res["errors_by_kind"] == {"integrity": 2}
    assert res["resume"]["duplicates"] >= 2
    assert res["resume"]["text_mismatches"] == 2


def test_resume_detects_an_injected_gap(bench: Bench, serve: Any) -> None:
    url, _ = serve("resume_gap", tokens=10)
    rc, res = bench(url, "--requests", "2", "--resume-every", "4", "--no-verify")
    assert rc == 1
    assert res["errors_by_kind"] == {"integrity": 2}
    assert res["resume"]["gaps"] >= 2
    assert res["resume"]["duplicates"] == 0


def test_resume_needs_a_stream_id(bench: Bench, serve: Any) -> None:
    url, state = serve("no_stream_id")
    rc, res = bench(url, "--requests", "50", "--resume-every", "2")
    assert rc == 1
    assert res["errors_by_kind"] == {"resume_unsupported": 1}
    assert state.posts == 1  # the run stops at once


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--concurrency", "0"], "--concurrency: must be >= 1"),
        (["--requests", "x"], "--requests: expected an integer"),
        (["--endpoint", "embeddings"], "invalid choice"),
        (["--requests", "1", "--duration", "1"], "not allowed with argument"),
        (["--header", "novalue"], "--header: expected 'Name: value'"),
        (["--resume-every", "2", "--resume-delay-ms", "nan"], "--resume-delay-ms: must be >= 0"),
    ],
)
def test_bad_arguments_name_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--no-latency", "--ttft-ms", "5"], "--no-latency"),
        (["--no-verify"], "--no-verify only applies with --resume-every"),
        (["--resume-delay-ms", "5"], "--resume-delay-ms only applies with --resume-every"),
        (["--url", "127.0.0.1:8000"], "--url: expected an http:// or https:// URL"),
    ],
)
def test_contradictory_arguments_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert client.main(parse(argv)) == 2
    assert message in capsys.readouterr().err
