"""S8: AIPerf, a benchmark client written elsewhere, against a fresh stack.

    python -m fakeai.services.bench.aiperf --concurrency 16 128 [--json]

For each concurrency level: a fresh local stack (``fakeai-streams up`` on a free port, its own
state directory), then ``aiperf profile`` at that concurrency asking every request for a fixed
TTFT and ITL (``X-FakeAI-TTFT-Ms`` / ``X-FakeAI-ITL-Ms``, 200 ms / 20 ms by default), with no
warm-up: benchmark tools start measuring at once, so the first level also measures cold start.
``--url`` measures a server already running instead (a warm one); ``--requests-per-worker 1``
keeps only the first burst (a cold start's). Printed: the client-observed TTFT and ITL p50/p99
against what was asked (match: median within 5 %, p99 within 10 %, as S2), the inter-chunk
gaps, the TTFT split into AIPerf's own send and the wait for the first byte, the server's own
edge TTFT and pipeline lag over the run (``GET /v1/metrics/latency``), and the CPU seconds of
AIPerf and of the stack over AIPerf's run. ``make bench`` runs it as S8 (:func:`s8`).

AIPerf installs once into its own venv, its tokenizer loaded offline (:mod:`.aiperf_install`).

Two quirks of AIPerf 0.13.0 the command works around:

- ``--header Name:200`` turns ``200`` into an int and then refuses it (headers must be
  strings); ``+200`` stays a string there and is 200 ms here (the edge parses with ``float``).
- Its per-token ITL divides by the tokens it counts by re-tokenizing the text; our pieces are
  not o200k tokens, it counts ~10 % fewer, and the ITL comes out ~10 % long.
  ``--use-server-token-count`` divides by the stream's ``usage`` instead.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from fakeai.embedded_redis import free_port
from fakeai.services.bench.aiperf_install import (
    AIPERF,
    DEFAULT_VENV,
    ENCODING,
    aiperf_env,
    install,
)
from fakeai.services.bench.driver import server_latency, stack_meter
from fakeai.services.bench.procs import CpuMeter
from fakeai.services.bench.report import json_line, md_table
from fakeai.services.bench.stack import LocalStack

if TYPE_CHECKING:
    from fakeai.services.bench.driver import Driver

__all__ = [
    "AIPERF",
    "Asked",
    "Observed",
    "aiperf_command",
    "compare",
    "install",
    "late_side",
    "main",
    "read_export",
    "run_level",
    "s8",
    "table",
]

logger = logging.getLogger(__name__)

MODEL = "gpt-4o"
StartStack = Callable[[], LocalStack]
"""Starts a fresh stack (``LocalStack.start``) for one level."""
_RUN_S = 900.0
"""The longest one AIPerf run may take (start-up included) before it is stopped."""
_MEDIAN_TOLERANCE = 0.05
_P99_TOLERANCE = 0.10


@dataclass(frozen=True, slots=True)
class Asked:
    """What every request asks for, and the shape of the load."""

    ttft_ms: float = 200.0
    itl_ms: float = 20.0
    isl: int = 100
    osl: int = 50
    requests_per_worker: int = 3
    warmup: int = 0


@dataclass(frozen=True, slots=True)
class Observed:
    """AIPerf's summary of one run, in ms (None: AIPerf did not report it)."""

    requests: int
    errors: int
    ttft: dict[str, float]
    itl: dict[str, float]
    inter_chunk: dict[str, float]
    sending: dict[str, float]
    """Request start -> request sent (connect included): the client's share of the TTFT."""
    waiting: dict[str, float]
    """Request sent -> first response byte: the server's share (and the loopback's)."""


def aiperf_command(exe: Path, url: str, concurrency: int, asked: Asked, out: Path) -> list[str]:
    """The ``aiperf profile`` command line for one level (module docstring: the quirks)."""
    return [
        str(exe),
        "profile",
        *("--model", MODEL, "--url", url, "--endpoint-type", "chat", "--streaming"),
        *("--concurrency", str(concurrency)),
        *("--request-count", str(concurrency * asked.requests_per_worker)),
        *(("--warmup-request-count", str(asked.warmup)) if asked.warmup else ()),
        *("--header", f"X-FakeAI-TTFT-Ms:+{asked.ttft_ms:g}"),
        *("--header", f"X-FakeAI-ITL-Ms:+{asked.itl_ms:g}"),
        # As a model server answers: not compressed (aiohttp asks for gzip by default).
        *("--header", "Accept-Encoding:identity"),
        *("--isl", str(asked.isl), "--osl", str(asked.osl)),
        *("--extra-inputs", "ignore_eos:true", "--use-server-token-count"),
        *("--tokenizer", ENCODING, "--random-seed", "1"),
        *("--ui", "none", "--no-server-metrics", "--no-gpu-telemetry"),
        *("--artifact-dir", str(out)),
    ]


def _summary(metric: Any) -> dict[str, float]:
    if not isinstance(metric, dict):
        return {}
    return {k: float(metric[k]) for k in ("p50", "p99", "max") if k in metric}


def read_export(path: Path) -> Observed:
    """Parse ``profile_export_aiperf.json`` (AIPerf's summary export, schema 1.x).

    Raises:
        ValueError: the file is not an AIPerf summary (no request count).
    """
    data = json.loads(path.read_text())
    count = (data.get("request_count") or {}).get("avg")
    if not isinstance(data, dict) or count is None:
        raise ValueError(f"{path}: not an AIPerf summary export (no request_count)")
    errors = sum(int(e.get("count", 1)) for e in data.get("error_summary") or [])
    return Observed(
        requests=int(count),
        errors=errors,
        ttft=_summary(data.get("time_to_first_token")),
        itl=_summary(data.get("inter_token_latency")),
        inter_chunk=_summary(data.get("inter_chunk_latency")),
        sending=_summary(data.get("http_req_sending")),
        waiting=_summary(data.get("http_req_waiting")),
    )


def _deviation(observed: float | None, asked: float) -> float | None:
    return None if observed is None or asked <= 0 else observed / asked - 1


def compare(observed: Observed, asked: Asked) -> dict[str, Any]:
    """Each figure against what was asked: ``{"ttft_p50": (obs, asked, deviation), ...}`` and
    ``match`` (every median within 5 %, every p99 within 10 %; a figure missing is no match)."""
    out: dict[str, Any] = {}
    ok = observed.errors == 0
    for name, summary, target in (
        ("ttft", observed.ttft, asked.ttft_ms),
        ("itl", observed.itl, asked.itl_ms),
    ):
        for pct, tolerance in (("p50", _MEDIAN_TOLERANCE), ("p99", _P99_TOLERANCE)):
            dev = _deviation(summary.get(pct), target)
            out[f"{name}_{pct}"] = (summary.get(pct), target, dev)
            ok = ok and dev is not None and abs(dev) <= tolerance
    out["match"] = ok
    return out


def _pair(cell: tuple[float | None, float, float | None]) -> str:
    obs, target, dev = cell
    if obs is None or dev is None:
        return f"- / {target:g}"
    return f"{obs:,.1f} / {target:g} ({100 * dev:+.1f}%)"


def _ms(summary: dict[str, Any], key: str, scale: float = 1.0) -> str:
    value = summary.get(key)
    return "-" if value is None else f"{scale * value:,.1f}"


_SPLITS = ("inter_chunk", "sending", "waiting")


def _cpu(cpu: dict[str, float] | None) -> str:
    return "-" if not cpu else f"{cpu['aiperf']:.1f} / {cpu['server']:.1f}"


def table(rows: list[dict[str, Any]]) -> list[str]:
    """The S8 Markdown table of :func:`run_level` results."""
    head = [
        "concurrency",
        "requests",
        "errors",
        "TTFT p50 obs / asked ms",
        "TTFT p99 obs / asked",
        "ITL p50 obs / asked",
        "ITL p99 obs / asked",
        "inter-chunk p50 / p99",
        "client send p50 / p99",
        "sent to first byte p50 / p99",
        "server edge TTFT p50 / p99 / max",
        "pipeline lag p99",
        "CPU s AIPerf / server",
        "match",
    ]
    body = []
    for r in rows:
        c, obs, edge, lag = r["compare"], r["observed"], r["edge_ttft"], r["pipeline_lag"]
        body.append(
            [
                r["concurrency"],
                obs["requests"],
                obs["errors"],
                _pair(c["ttft_p50"]),
                _pair(c["ttft_p99"]),
                _pair(c["itl_p50"]),
                _pair(c["itl_p99"]),
                *(f"{_ms(obs[k], 'p50')} / {_ms(obs[k], 'p99')}" for k in _SPLITS),
                " / ".join(_ms(edge, k, 1000) for k in ("p50", "p99", "max")),
                _ms(lag, "p99", 1000),
                _cpu(r.get("cpu_s")),
                "yes" if c["match"] else "**no**",
            ]
        )
    return md_table(head, body)


def run_level(
    venv: Path, concurrency: int, asked: Asked, work: Path, target: str | StartStack
) -> dict[str, Any]:
    """One level: AIPerf against ``target`` (a running server's URL, or a function that starts
    a fresh stack, stopped afterwards), its export, the server's own latency over the run.
    AIPerf's output is kept in ``work/c<concurrency>.log``."""
    if isinstance(target, str):
        stack, url = None, target
    else:
        stack = target()
        url = stack.url
    out = work / f"c{concurrency}"
    meter = CpuMeter({}, None) if stack is None else stack_meter(stack)
    cmd = aiperf_command(venv / "bin" / "aiperf", url, concurrency, asked, out)
    try:
        started, client0 = time.time(), _children_cpu_s()
        with (work / f"c{concurrency}.log").open("wb") as log:
            _, server_cpu = meter.measure(lambda: _run(cmd, aiperf_env(venv), log))
        client_cpu = _children_cpu_s() - client0
        server = server_latency(url, MODEL, window_s=time.time() - started + 1)
    finally:
        if stack is not None:
            stack.stop()
    observed = read_export(out / "profile_export_aiperf.json")
    return {
        "concurrency": concurrency,
        "observed": asdict(observed),
        "compare": compare(observed, asked),
        "edge_ttft": server.get("edge_ttft") or {},
        "pipeline_lag": server.get("pipeline_lag") or {},
        "cpu_s": {"aiperf": round(client_cpu, 2), "server": round(sum(server_cpu.values()), 2)},
    }


def _run(cmd: list[str], env: dict[str, str], log: IO[bytes]) -> None:
    """Run AIPerf in its own process group; past :data:`_RUN_S`, stop the whole group (AIPerf
    runs its services as child processes).

    Raises:
        subprocess.CalledProcessError: AIPerf failed (its output is in ``log``).
        subprocess.TimeoutExpired: it ran past the deadline and was stopped.
    """
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        code = proc.wait(_RUN_S)
    except subprocess.TimeoutExpired:
        for sig, grace_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, None)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(grace_s)
                break
            except subprocess.TimeoutExpired:
                continue
        raise
    if code != 0:
        raise subprocess.CalledProcessError(code, cmd[:2])


def _children_cpu_s() -> float:
    """CPU seconds of this process's finished children (AIPerf and every process it ran)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def late_side(row: dict[str, Any], asked: Asked) -> str:
    """One sentence: where the TTFT beyond what was asked went, client or server, at p50."""
    obs = row["observed"]
    send, wait = obs["sending"].get("p50"), obs["waiting"].get("p50")
    edge_p99 = (row["edge_ttft"] or {}).get("p99")
    if send is None or wait is None or edge_p99 is None:
        return f"At {row['concurrency']}: AIPerf or the server did not report the split."
    server = max(0.0, wait - asked.ttft_ms)
    side = "the client (AIPerf's own send)" if send > server else "the server side"
    return (
        f"At {row['concurrency']}: of the TTFT p50 beyond {asked.ttft_ms:g} ms, AIPerf's own "
        f"send took {send:.1f} ms and the wait for the first byte {server:.1f} ms more than "
        f"asked; the server's own edge TTFT p99 was {1000 * edge_p99:.1f} ms: most of the "
        f"delay is on {side}."
    )


def s8(driver: Driver, levels: tuple[int, ...] = (16, 128, 512)) -> list[str]:
    """The S8 section of ``make bench``: each level on a fresh stack of ``driver``'s; a note
    instead of the table when AIPerf cannot be installed."""
    lines = ["## S8 AIPerf (a client written elsewhere)", ""]
    error = install(DEFAULT_VENV)
    if error is not None:
        return [*lines, f"Skipped: {error}.", ""]
    asked, work = Asked(), driver.work / "s8"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for level in levels:
        start = functools.partial(driver.stack, f"s8-c{level}")
        try:
            rows.append(run_level(DEFAULT_VENV, level, asked, work, start))
        except subprocess.SubprocessError as e:
            lines.append(f"Concurrency {level} failed: `{e}` (AIPerf's output: `c{level}.log`).")
    lines += [
        f"`{AIPERF}` in its own venv, tokenizer {ENCODING} offline; chat, streaming, "
        f"{asked.isl}-token prompts, {asked.osl} output tokens, {asked.requests_per_worker} "
        f"requests per worker, no warm-up, every request asking TTFT {asked.ttft_ms:g} ms and "
        f"ITL {asked.itl_ms:g} ms (`python -m fakeai.services.bench.aiperf`).",
        "",
        *table(rows),
        *(late_side(row, asked) for row in rows),
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    defaults = Asked()
    p = argparse.ArgumentParser(
        prog="python -m fakeai.services.bench.aiperf", description=__doc__.split("\n")[0]
    )
    p.add_argument("--concurrency", type=int, nargs="+", default=[16, 128, 512])
    p.add_argument("--ttft-ms", type=float, default=defaults.ttft_ms)
    p.add_argument("--itl-ms", type=float, default=defaults.itl_ms)
    p.add_argument("--requests-per-worker", type=int, default=defaults.requests_per_worker)
    p.add_argument("--warmup", type=int, default=0, help="AIPerf warm-up requests (default none)")
    p.add_argument("--url", help="an already running FakeAI Streams instead of fresh stacks")
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    p.add_argument("--work", type=Path, help="where AIPerf's artifacts go (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="one JSON line per level")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    error = install(args.venv)
    if error is not None:
        print(f"S8 skipped: {error}", file=sys.stderr)
        return 1
    asked = Asked(
        ttft_ms=args.ttft_ms,
        itl_ms=args.itl_ms,
        requests_per_worker=args.requests_per_worker,
        warmup=args.warmup,
    )
    work = args.work or Path(tempfile.mkdtemp(prefix="fakeai-aiperf-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for level in args.concurrency:
        fresh = functools.partial(LocalStack.start, LocalStack(free_port(), work / f"up-{level}"))
        try:
            row = run_level(args.venv, level, asked, work, args.url or fresh)
        except subprocess.SubprocessError as e:
            print(f"AIPerf failed at concurrency {level} ({e}); see {work}/c{level}.log")
            return 1
        rows.append(row)
        if args.json:
            print(json_line(row), flush=True)
    if not args.json:
        print("\n".join(table(rows)))
    logger.info("AIPerf artifacts in %s", work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
