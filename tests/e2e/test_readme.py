"""Every ``bash`` and ``python`` block of README.md runs as written against a real
``fakeai-streams up``, the way a newcomer runs them after ``make run``.

README.md is parsed at test time; each runnable block is one test case, named after its
section heading (with a suffix for the second block and on of a section). One ``up`` serves the
whole module: embedded Redis, a free loopback port, a temporary state directory; it is stopped
by PID at the end.

How a block runs: a ``bash`` block in ``bash -e -c``, a ``python`` block saved as a file and run
with ``python``, both in a temporary working directory, with the virtualenv's ``bin`` first on
PATH (what ``source .venv/bin/activate`` does) and, in the environment, the state directory and
address of the test's ``up`` (``FAKEAI_STATE_DIR``, ``FAKEAI_HOST``, ``FAKEAI_PORT``; no other
``FAKEAI_*`` variable), as a shell where ``make run`` started it would have them.

The only substitutions made in a block's text:
- the base URL ``http://127.0.0.1:8000`` becomes the test's ``http://127.0.0.1:<port>``;
- the README's sample stream id ``chatcmpl-1a20e5af2099f22345f46e906a8028d6f28`` becomes the id
  of a real stream the test created just before (a finished ``gpt-4o`` chat stream of 4 tokens,
  entries ``-1`` to ``-6`` as in the README's sample);
- its entry ids ``1795537170953-N`` become ``<that stream's created_ms>-N``.

A block passes when it exits 0, prints something and no OpenAI error body (curl exits 0 on a
4xx), passes its own check in ``RULES`` if it has one, and, when the README shows its output
(the ``text`` block right after it), prints output of the same shape: status line, header
names, each event's fields, ids shaped ``<ms>-<seq>``, the first chunk's JSON keys.

Blocks that cannot run in a test are listed in ``RULES`` with the reason (``skip``), matched by
a stable snippet of their text; a long-running command with a natural bound runs with that
bound (``bound``). A block known to fail as written is marked ``xfail`` (strict) with the fix it
needs, so it shows until fixed. Every rule must match exactly one block, and a block with no
rule is run: a new README block cannot go untested.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.support.readme import (
    README,
    Sample,
    Shown,
    blocks,
    run_block,
    same_shape,
    substitute,
)
from tests.support.servers import wait_until
from tests.support.up import up_env

from fakeai.embedded_redis import free_port
from fakeai.services.bench.stack import LocalStack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BLOCK_TIMEOUT_S = 45.0
VENV_BIN = Path(sys.executable).parent
"""The virtualenv running the tests: its ``bin`` holds ``python`` and ``fakeai-streams``."""

Check = Callable[[str, Sample], bool]


@dataclass(frozen=True)
class Rule:
    """How to treat the one block whose text contains ``snippet``."""

    snippet: str
    skip: str = ""
    """Why the block is not run (it cannot be, by nature)."""
    xfail: str = ""
    """Why the block fails as written, and the fix it needs."""
    bound: tuple[str, str] | None = None
    """(text, replacement) that bounds a command that otherwise runs until Ctrl-C; the block
    then runs in the background while the test starts one stream."""
    check: Check | None = None
    """What its output must show, beyond the generic checks."""


def _last_line(out: str) -> str:
    lines = out.strip().splitlines()
    return lines[-1].strip() if lines else ""


def _resumed_after_2(out: str, sample: Sample) -> bool:
    """Only the events after ``-2`` (a priming event first), ending with ``[DONE]``."""
    ids = [ln[4:] for ln in out.splitlines() if ln.startswith("id: ")]
    return (
        ids[:2] == [f"{sample.created_ms}-2", f"{sample.created_ms}-3"]
        and _last_line(out) == "data: [DONE]"
    )


def _final_status(out: str, sample: Sample) -> bool:
    body = json.loads(out)
    return bool(body["id"] == sample.stream_id and body["status"] == "done")


def _latency_json(out: str, sample: Sample) -> bool:
    return "gpt-4o" in json.loads(out)["models"]


RULES = [
    Rule("make run ", skip="starts the server this module starts itself (`up`), until Ctrl-C"),
    Rule(
        "-D - http://127.0.0.1:8000/v1/chat/completions",
        check=lambda out, s: "x-stream-id: chatcmpl-" in out,
    ),
    Rule(
        "client.chat.completions.create(",
        check=lambda out, s: "completion_tokens=" in _last_line(out),
    ),
    Rule("-H 'Last-Event-ID: 1795537170953-2'", check=_resumed_after_2),
    Rule("fakeai-streams export ", check=lambda out, s: s.stream_id in out),
    Rule("/cancel", check=_final_status),
    Rule(
        "fakeai-streams tail ",
        bound=("fakeai-streams tail ", "fakeai-streams tail --limit 3 "),
        check=lambda out, s: len(out.strip().splitlines()) == 3,
    ),
    Rule("client.responses.create(", check=lambda out, s: _last_line(out) == "completed"),
    Rule("Runner.run_sync(", check=lambda out, s: bool(out.strip())),
    Rule('"X-FakeAI-Disconnect-After": "5"', check=lambda out, s: bool(out.strip())),
    Rule("/v1/metrics/latency?model=gpt-4o", check=_latency_json),
    Rule(
        "fakeai-streams cluster ",
        skip="runs a Redis Cluster and services until Ctrl-C, with `<a node>` to fill in by "
        "hand (the cluster paths are tested in tests/e2e/test_e2e_scale_out.py)",
    ),
    Rule("SSEFormatter.format_done()", check=lambda out, s: _last_line(out) == "data: [DONE]"),
    Rule(
        "fakeai-streams bench ",
        skip="a load test (100 concurrent streams for 10 s, then 1,100 requests): too heavy "
        "for this module's time and the shared test machine (bench has its own tests)",
    ),
]

SHOWN = blocks(README.read_text(encoding="utf-8"))


def _rule(shown: Shown) -> Rule | None:
    found = [r for r in RULES if r.snippet in shown.block.source]
    return found[0] if len(found) == 1 else None


def _param(shown: Shown) -> object:
    rule = _rule(shown)
    marks: list[pytest.MarkDecorator] = []
    if rule is not None and rule.skip:
        marks.append(pytest.mark.skip(reason=rule.skip))
    if rule is not None and rule.xfail:
        marks.append(pytest.mark.xfail(strict=True, reason=rule.xfail))
    return pytest.param(shown, marks=marks, id=shown.block.id)


def test_every_rule_names_one_block() -> None:
    """A rule whose block is gone or ambiguous fails here, and so does a block two rules
    match; a block with no rule is run (every runnable block is a case below)."""
    assert SHOWN, "no bash or python block found in README.md"
    ids = [s.block.id for s in SHOWN]
    assert len(ids) == len(set(ids)), ids
    for rule in RULES:
        matching = [s.block.id for s in SHOWN if rule.snippet in s.block.source]
        assert len(matching) == 1, f"rule {rule.snippet!r} matches {matching}"
    assert not [s.block.id for s in SHOWN if sum(r.snippet in s.block.source for r in RULES) > 1]


def test_shape_check_sees_what_differs() -> None:
    """The README's shown curl output has its own shape; a changed status, a missing header,
    a first event without ``retry:``, an end without ``[DONE]`` or other chunk keys do not."""
    shown = next(s.output for s in SHOWN if s.output is not None)
    assert shown is not None
    assert same_shape(shown, shown) == []
    changed = [
        shown.replace("200 OK", "404 Not Found"),
        shown.replace("x-stream-id:", "x-other:"),
        shown.replace("retry: 3000\n", ""),
        shown.replace("data: [DONE]", 'data: {"a":1}'),
        shown.replace('"system_fingerprint"', '"fingerprint"', 1),
        shown.replace("id: 1795537170953-2", "id: two"),
    ]
    for text in changed:
        assert same_shape(shown, text), text


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One ``fakeai-streams up`` for the module: embedded Redis, free port, its own state dir."""
    stack = LocalStack(free_port(), tmp_path_factory.mktemp("up"), env=up_env("fakeai"))
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def _stream_chat(base_url: str, max_tokens: int) -> tuple[str, list[str]]:
    """Read one short ``gpt-4o`` chat stream to its end: its id and its event ids."""
    body = {"model": "gpt-4o", "stream": True, "max_tokens": max_tokens, "ignore_eos": True}
    body["messages"] = [{"role": "user", "content": "Hello"}]
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body, timeout=30) as resp:
        assert resp.status_code == 200
        ids = [ln[4:] for ln in resp.iter_lines() if ln.startswith("id: ")]
        return resp.headers["x-stream-id"], ids


@pytest.fixture
def sample(up: LocalStack) -> Sample:
    """A finished stream standing in for the README's sample stream: 4 tokens, a finish chunk
    and ``[DONE]``, entries ``-1`` to ``-6`` like the sample's."""
    counted = _ttft_count(up.url)
    stream_id, ids = _stream_chat(up.url, 4)
    assert ids[-1].endswith("-6"), ids
    # As a reader would: the blocks run after the metrics consumer has counted the stream (it
    # commits up to LINGER_S after a stream ends), so the latency block shows gpt-4o.
    wait_until(lambda: _ttft_count(up.url) > counted, timeout_s=20, interval_s=0.05)
    return Sample(up.url, stream_id, int(ids[0].split("-")[0]))


def _ttft_count(base_url: str) -> int:
    """Streams of gpt-4o the metrics consumer has counted in the last hour."""
    r = httpx.get(f"{base_url}/v1/metrics/latency?model=gpt-4o&window=3600", timeout=10)
    r.raise_for_status()
    model = r.json()["models"].get("gpt-4o")
    return int(model["ttft"]["count"]) if model else 0


@pytest.fixture
def block_env(up: LocalStack) -> dict[str, str]:
    """The environment of a shell where ``source .venv/bin/activate`` ran and ``make run``
    started the test's ``up``."""
    assert (VENV_BIN / "fakeai-streams").exists(), VENV_BIN
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKEAI_")}
    env.pop("REDIS_URL", None)
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(VENV_BIN.parent),
        FAKEAI_STATE_DIR=str(up.state_dir),
        FAKEAI_HOST="127.0.0.1",
        FAKEAI_PORT=str(up.port),
    )
    return env


def _one_stream_for(base_url: str, before: set[str]) -> None:
    """Once the watching command's consumer group exists (a group not in ``before``), stream
    one chat completion."""
    wait_until(lambda: _groups(base_url) - before, timeout_s=20, interval_s=0.1)
    _stream_chat(base_url, 8)


def _groups(base_url: str) -> set[str]:
    data = httpx.get(f"{base_url}/v1/metrics/groups", timeout=10).json()["data"]
    return {g["group"] for g in data}


@pytest.mark.parametrize("shown", [_param(s) for s in SHOWN])
def test_readme_block_runs_as_written(
    shown: Shown, sample: Sample, block_env: dict[str, str], tmp_path: Path
) -> None:
    rule = _rule(shown)
    source = substitute(shown.block.source, sample)
    while_running = None
    if rule is not None and rule.bound is not None:
        old, new = rule.bound
        assert old in source, f"bound {old!r} not in the block"
        source = source.replace(old, new)
        while_running = functools.partial(
            _one_stream_for, sample.base_url, _groups(sample.base_url)
        )
    done = run_block(
        shown.block,
        source,
        cwd=tmp_path,
        env=block_env,
        timeout_s=BLOCK_TIMEOUT_S,
        while_running=while_running,
    )
    where = f"README.md:{shown.block.line}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n"
    where += done.stderr[-3000:]
    assert done.returncode == 0, where
    assert done.stdout.strip(), where
    assert '{"error":' not in done.stdout, where
    if shown.output is not None:
        assert not same_shape(shown.output, done.stdout), (
            same_shape(shown.output, done.stdout),
            where,
        )
    if rule is not None and rule.check is not None:
        assert rule.check(done.stdout, sample), where
