"""How a bench run is shown: a rich progress bar on stderr, a rich table on stdout, JSON."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fakeai.services.bench.stats import ERROR_KINDS, Totals

__all__ = ["json_line", "md_table", "progress_bar", "render_table"]


def json_line(result: dict[str, Any]) -> str:
    """One line of JSON (NaN-free, so any JSON parser takes it)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        return v

    return json.dumps(clean(result), separators=(",", ":"))


@contextmanager
def progress_bar(
    enabled: bool, *, total_requests: int | None, duration_s: float | None
) -> Iterator[Callable[[Totals, float], None] | None]:
    """A progress callback for :func:`run_bench` drawing on stderr, or None when disabled
    (``--json``, or stderr is not a terminal)."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]bench"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        total = float(total_requests) if total_requests is not None else duration_s
        task = bar.add_task("bench", total=total, info="")

        def update(t: Totals, elapsed: float) -> None:
            done = t.finished if total_requests is not None else min(elapsed, duration_s or 0.0)
            rate = t.chunks_ok / elapsed if elapsed > 0 else 0.0
            errors = sum(t.errors.values())
            bar.update(
                task,
                completed=done,
                info=f"{t.requests_ok} ok, {errors} errors, {rate:,.0f} chunks/s",
            )

        yield update


def _ms(v: Any) -> str:
    return "-" if v is None else f"{v:,.2f}"


def render_table(result: dict[str, Any], console: Console | None = None) -> None:
    """The human-readable report on stdout."""
    console = console or Console()
    head = Table(title="fakeai-streams bench", show_header=False, title_justify="left")
    head.add_column("", style="bold")
    head.add_column("")
    if result["duration_s"]:
        amount = f"for {result['duration_s']} s"
    else:
        amount = f"{result['requests_target']} requests"
    head.add_row("target", f"{result['url']}  ({result['endpoint']}, model {result['model']})")
    head.add_row(
        "load",
        f"{result['concurrency']} concurrent, {amount}, max_tokens {result['max_tokens']}",
    )
    head.add_row("wall time", f"{result['wall_s']:.3f} s")
    head.add_row("requests", f"{result['requests_ok']} ok / {result['requests']} finished")
    head.add_row(
        "throughput",
        f"{result['requests_per_s']:,} req/s   {result['chunks_per_s']:,} chunks/s   "
        f"{result['output_tokens_per_s']:,} tokens/s",
    )
    head.add_row("chunks", f"{result['chunks']:,}  ({result['chunks_per_request']} per request)")
    head.add_row(
        "client CPU",
        f"{result['client_cpu_s']} s  ({result['client_cpu_util']} cores, "
        f"{result['client_cpu_us_per_chunk']} µs per chunk)",
    )
    console.print(head)

    lat = Table(title="latency (ms)", title_justify="left")
    for col in ("metric", "count", "mean", "p50", "p90", "p99", "max"):
        lat.add_column(col, justify="left" if col == "metric" else "right")
    resume = result.get("resume")
    rows = [
        ("TTFT", result["ttft_ms"]),
        ("ITL", result["itl_ms"]),
        ("end-to-end", result["e2e_ms"]),
    ]
    if resume:
        rows.append(("resume", resume["latency_ms"]))
    for name, s in rows:
        stats = (_ms(s[k]) for k in ("mean", "p50", "p90", "p99", "max"))
        lat.add_row(name, str(s["count"]), *stats)
    console.print(lat)

    if resume:
        console.print(
            f"resume: {resume['resumes']} reconnects, {resume['gaps']} gaps, "
            f"{resume['duplicates']} duplicates, {resume['text_mismatches']} text mismatches"
        )
    if result["errors"]:
        err = Table(title=f"errors: {result['errors']}", title_justify="left")
        err.add_column("kind")
        err.add_column("count", justify="right")
        err.add_column("meaning")
        err.add_column("first seen")
        for kind, n in result["errors_by_kind"].items():
            err.add_row(
                kind, str(n), ERROR_KINDS.get(kind, ""), result["error_samples"].get(kind, "")
            )
        console.print(err)
        if result["http_statuses"]:
            console.print(f"HTTP statuses: {result['http_statuses']}")


def md_table(head: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table; floats get two decimals (none from 1,000 up), None shows as "-"."""

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return [*out, ""]
