"""The README's code blocks as a newcomer runs them: extracted, filled in, run, and their output
compared by shape with the output the README shows.

Used by ``tests/e2e/test_readme.py``. The README is parsed with the same fence-and-heading
parser as the framework document's examples (``tests/unit/test_seed_examples.py``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.unit.test_seed_examples import Block, parse_blocks

__all__ = [
    "README",
    "RUNNABLE",
    "SAMPLE_ENTRY_MS",
    "SAMPLE_STREAM_ID",
    "Block",
    "HttpShape",
    "Sample",
    "blocks",
    "http_shape",
    "run_block",
    "same_shape",
    "substitute",
]

README = Path(__file__).resolve().parents[2] / "README.md"

RUNNABLE = ("bash", "python")
"""The languages whose blocks are commands to run; ``text`` blocks are the output they show."""

README_BASE_URL = "http://127.0.0.1:8000"
SAMPLE_STREAM_ID = "chatcmpl-1a20e5af2099f22345f46e906a8028d6f28"
SAMPLE_ENTRY_MS = "1795537170953"
"""The millisecond part of the sample stream's entry ids (``1795537170953-N``)."""


@dataclass(frozen=True)
class Sample:
    """A real stream on the test's server, standing in for the README's sample stream."""

    base_url: str
    stream_id: str
    created_ms: int


@dataclass(frozen=True)
class Shown:
    """A runnable block and the ``text`` block right after it (its shown output), if any."""

    block: Block
    output: str | None


def blocks(text: str) -> list[Shown]:
    """Every ``bash`` and ``python`` block, each with the output the README shows after it."""
    parsed = parse_blocks(text)
    found: list[Shown] = []
    for i, block in enumerate(parsed):
        if block.lang not in RUNNABLE:
            continue
        nxt = parsed[i + 1] if i + 1 < len(parsed) else None
        found.append(Shown(block, nxt.source if nxt is not None and nxt.lang == "text" else None))
    return found


def substitute(source: str, sample: Sample) -> str:
    """The only changes made to a block: the server's address, the sample stream's id and the
    millisecond part of its entry ids."""
    return (
        source.replace(README_BASE_URL, sample.base_url)
        .replace(SAMPLE_STREAM_ID, sample.stream_id)
        .replace(f"{SAMPLE_ENTRY_MS}-", f"{sample.created_ms}-")
    )


def run_block(
    block: Block,
    source: str,
    *,
    cwd: Path,
    env: dict[str, str],
    timeout_s: float,
    while_running: Callable[[], object] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a block as the README says: bash blocks in ``bash -e``, python blocks saved as a
    file and run with the environment's ``python`` (the project's, first on PATH).

    ``while_running`` is called once the block has started (traffic for a command that
    watches it). The block runs in its own process group, killed by its id if it outlives
    ``timeout_s`` (the ``TimeoutExpired`` is raised)."""
    if block.lang == "bash":
        cmd = ["bash", "-e", "-c", source]
    else:
        script = cwd / "example.py"
        script.write_text(source + "\n", encoding="utf-8")
        cmd = ["python", str(script)]
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        if while_running is not None:
            while_running()
        out, err = proc.communicate(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@dataclass
class HttpShape:
    """What an HTTP response printed by ``curl -D -`` looks like, without its random text."""

    status: str = ""
    headers: set[str] = field(default_factory=set)
    events: list[tuple[str, ...]] = field(default_factory=list)
    """Each SSE event as its field names in order; data as ``data:[DONE]``, ``data:{}`` (JSON)
    or ``data:?``."""
    ids: list[str] = field(default_factory=list)
    first_json: Any = None
    """The key structure of the first JSON ``data:`` that is whole (elided ones are skipped)."""


def _keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_keys(v) for v in value[:1]]
    return None


def _field(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name, value.removeprefix(" ")


def http_shape(text: str) -> HttpShape:
    """Parse a status line and headers (if any), then SSE events; ``...`` lines are elisions."""
    shape = HttpShape()
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[0].startswith("HTTP/"):
        shape.status = lines[0].strip()
        end = lines.index("") if "" in lines else len(lines)
        shape.headers = {_field(h)[0].lower() for h in lines[1:end]}
        lines = lines[end + 1 :]
    event: list[str] = []
    for line in [*lines, ""]:
        if line.strip() == "...":
            continue
        if not line:
            if event:
                shape.events.append(tuple(event))
            event = []
            continue
        name, value = _field(line)
        if name == "data":
            kind = "[DONE]" if value == "[DONE]" else "{}" if value.startswith("{") else "?"
            event.append(f"data:{kind}")
            if kind == "{}" and shape.first_json is None:
                try:
                    shape.first_json = _keys(json.loads(value))
                except ValueError:  # elided with "...", as the README does after the first
                    pass
        else:
            event.append(name)
            if name == "id":
                shape.ids.append(value)
    return shape


def same_shape(shown: str, printed: str) -> list[str]:
    """How ``printed`` differs in shape from the README's ``shown`` output (empty: the same):
    the status line, every header name shown, the first and last events' fields, every event
    between shaped like the shown second one, ids shaped ``<ms>-<seq>``, and the first chunk's
    JSON keys."""
    want, got = http_shape(shown), http_shape(printed)
    problems = []
    if want.status != got.status:
        problems.append(f"status {got.status!r}, README shows {want.status!r}")
    if missing := want.headers - got.headers:
        problems.append(f"headers missing: {sorted(missing)}")
    if len(got.events) < len(want.events):
        problems.append(f"{len(got.events)} events, README shows at least {len(want.events)}")
    elif want.events:
        if got.events[0] != want.events[0]:
            problems.append(f"first event {got.events[0]}, README shows {want.events[0]}")
        if got.events[-1] != want.events[-1]:
            problems.append(f"last event {got.events[-1]}, README shows {want.events[-1]}")
        middle = want.events[1] if len(want.events) > 2 else None
        odd = [e for e in got.events[1:-1] if middle is not None and e != middle]
        if odd:
            problems.append(f"events shaped {odd[0]}, README shows {middle}")
    bad_ids = [i for i in got.ids if not re.fullmatch(r"\d+-\d+", i)]
    if bad_ids or (want.ids and not got.ids):
        problems.append(f"event ids {got.ids[:3]}, README shows {want.ids[:3]}")
    if want.first_json is not None and want.first_json != got.first_json:
        problems.append(f"first chunk keys {got.first_json}, README shows {want.first_json}")
    return problems
