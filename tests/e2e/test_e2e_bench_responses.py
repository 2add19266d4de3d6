"""``fakeai-streams bench --api responses`` against the real pipeline (producer + edge under
real uvicorn, single Redis and cluster): streams, timing, and resumes with ``starting_after``
checked by ``sequence_number``. Each test runs the CLI entry point and reads its ``--json``
line."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest
from tests.support.stack import Stack

from fakeai.services.bench import client

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


def _bench(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, dict[str, Any]]:
    parser = argparse.ArgumentParser()
    client.add_arguments(parser)
    args = parser.parse_args(
        ["--url", url, "--api", "responses", "--json", "--timeout", "20", *argv]
    )
    rc = client.main(args)
    out = capsys.readouterr().out.strip().splitlines()
    assert out, "no output"
    return rc, json.loads(out[-1])


def test_bench_drives_the_responses_api(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    rc, res = _bench(capsys, stack.url, "-c", "3", "-n", "6", "--max-tokens", "20", "--no-latency")
    assert rc == 0, res["error_samples"]
    assert res["endpoint"] == "responses"
    assert res["requests_ok"] == 6
    assert res["errors"] == 0
    assert res["output_tokens"] == 6 * 20  # ignore_eos: exactly max_output_tokens
    assert res["ttft_ms"]["count"] == 6  # one first delta per response
    assert res["itl_ms"]["count"] == 6 * 19  # between the 20 deltas of each
    # created, in_progress, item added, part added, 20 deltas, text done, part done,
    # item done, completed
    assert res["chunks_per_request"] == 28
    for key in ("chunks_per_s", "requests_per_s"):
        assert res[key] > 0
    for pct in ("p50", "p90", "p99", "max"):
        assert res["ttft_ms"][pct] is not None
        assert res["itl_ms"][pct] is not None


def test_bench_resumes_responses_with_starting_after(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, res = _bench(
        capsys,
        stack.url,
        "-c",
        "2",
        "-n",
        "4",
        "--max-tokens",
        "30",
        "--ttft-ms",
        "0",
        "--itl-ms",
        "2",
        "--resume-every",
        "7",
    )
    assert rc == 0, res["error_samples"]
    assert res["requests_ok"] == 4
    resume = res["resume"]
    assert resume["resumes"] >= 4 * (38 // 7)  # 38 events each, a drop every 7
    assert resume["latency_ms"]["count"] == resume["resumes"]
    assert resume["gaps"] == 0
    assert resume["duplicates"] == 0
    assert resume["text_mismatches"] == 0
    assert res["output_tokens"] == 4 * 30


def test_bench_refuses_fewer_than_16_output_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    client.add_arguments(parser)
    args = parser.parse_args(["--api", "responses", "--max-tokens", "8"])
    assert client.main(args) == 2
    assert "max_output_tokens >= 16" in capsys.readouterr().err
