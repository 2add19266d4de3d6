"""Every Python example of the streaming framework's document runs as written.

The document (``docs/streaming-framework.md`` in this repository) is parsed at test time and
each ``python`` code block is one test case, named after its heading. Blocks that only show
output (``json``, ``bash``, untagged) are skipped.

Only the document's own placeholders are filled in, by the prelude below: the objects it assumes
(``chat_response``, ``response``, ``context``, ``chunk``, ``error``, ``send_to_client``,
``process_response``, ``logger``, ...) and the ``...`` it writes for "your usual arguments" in
``manager.create_stream(...)``, which becomes ``**stream_args``. A block with top-level
``await``/``async for``/``yield`` runs as the body of an async function (an async generator when
it yields, which the test drains). A block that fails here is a library bug, not a test bug.
"""

from __future__ import annotations

import ast
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import fakeai.streaming
from fakeai.content import build_chat_completion, build_text_completion, split_pieces
from fakeai.latency_profiles import get_latency_manager
from fakeai.metrics import MetricsTracker
from fakeai.streaming import StreamChunk, StreamContext, StreamError, StreamManager, StreamType

DOC = Path(__file__).resolve().parents[2] / "docs" / "streaming-framework.md"

_FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


@dataclass(frozen=True)
class Block:
    id: str
    lang: str
    line: int
    source: str


def parse_blocks(text: str) -> list[Block]:
    """Fenced code blocks with the heading above each (ids made unique with a suffix)."""
    blocks: list[Block] = []
    heading = "top"
    seen: dict[str, int] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            match = _HEADING.match(lines[i])
            if match:
                heading = re.sub(r"[^a-z0-9]+", "-", match.group(1).lower()).strip("-")
            i += 1
            continue
        start = i + 1
        i = start
        while i < len(lines) and not lines[i].startswith("```"):
            i += 1
        seen[heading] = seen.get(heading, 0) + 1
        block_id = heading if seen[heading] == 1 else f"{heading}-{seen[heading]}"
        blocks.append(Block(block_id, fence.group(1).lower(), start + 1, "\n".join(lines[start:i])))
        i += 1
    return blocks


BLOCKS = parse_blocks(DOC.read_text(encoding="utf-8"))
PYTHON = [b for b in BLOCKS if b.lang in ("python", "py", "python3")]


class _FillEllipsis(ast.NodeTransformer):
    """``manager.create_stream(..., x=1)`` -> ``manager.create_stream(**stream_args, x=1)``."""

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        placeholder = [a for a in node.args if isinstance(a, ast.Constant) and a.value is Ellipsis]
        if placeholder:
            node.args = [a for a in node.args if a not in placeholder]
            node.keywords.insert(
                0, ast.keyword(arg=None, value=ast.Name("stream_args", ast.Load()))
            )
        return node


def _top_level_kinds(tree: ast.Module) -> tuple[bool, bool]:
    """(needs async, yields) for statements outside any nested function or class."""
    needs_async = yields = False
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        if isinstance(node, ast.Await | ast.AsyncFor | ast.AsyncWith):
            needs_async = True
        if isinstance(node, ast.Yield | ast.YieldFrom):
            needs_async = yields = True
        stack.extend(ast.iter_child_nodes(node))
    return needs_async, yields


def compile_block(block: Block) -> tuple[Any, bool, bool]:
    tree = _FillEllipsis().visit(ast.parse(block.source, filename=f"{DOC.name}:{block.line}"))
    needs_async, yields = _top_level_kinds(tree)
    if needs_async:
        # The body becomes `async def __example__(): <body>; __locals__.update(locals())`.
        body = tree.body + ast.parse("__locals__.update(locals())").body
        func = ast.AsyncFunctionDef(
            name="__example__",
            args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]),
            body=body,
            decorator_list=[],
            returns=None,
        )
        tree = ast.Module(body=[func], type_ignores=[])
    ast.fix_missing_locations(tree)
    code = compile(tree, f"{DOC.name}:{block.line}", "exec")
    return code, needs_async, yields


def prelude() -> dict[str, Any]:
    """The placeholders the document assumes, as small real objects."""
    chat_response = build_chat_completion(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6},
        completion_id="chatcmpl-example",
        created=1_700_000_000,
        seed=1,
    )
    completion_response = build_text_completion(
        {"model": "gpt-4o", "prompt": "Say", "max_tokens": 6},
        completion_id="cmpl-example",
        created=1_700_000_000,
        seed=1,
    )
    sent: list[str] = []

    async def send_to_client(data: str) -> None:
        sent.append(data)

    def process_response(full_response: Any) -> list[dict[str, Any]]:
        text = full_response["choices"][0]["message"]["content"]
        return [{"content": piece} for piece in split_pieces(text)]

    ns: dict[str, Any] = {
        name: getattr(fakeai.streaming, name) for name in fakeai.streaming.__all__
    }
    ns.update(
        __name__="seed_example",
        time=time,
        logger=logging.getLogger("seed_example"),
        chat_response=chat_response,
        response=chat_response,
        completion_response=completion_response,
        send_to_client=send_to_client,
        sent=sent,
        process_response=process_response,
        latency_manager=get_latency_manager(),
        metrics_tracker=MetricsTracker(),
        manager=StreamManager(),
        context=StreamContext(
            stream_id="stream-123",
            stream_type=StreamType.CHAT,
            model="gpt-4o",
            endpoint="/v1/chat/completions",
            ttft_ms=1.0,
            itl_ms=1.0,
        ),
        chunk=StreamChunk(
            chunk_id="chatcmpl-example-0",
            sequence_number=0,
            data={
                "id": "chatcmpl-example",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": "gpt-4o",
                "choices": [{"index": 0, "delta": {"content": "Hello world"}}],
            },
            token_count=2,
            is_first=True,
        ),
        error=StreamError(error_code="stream_timeout", message="Stream exceeded 300s timeout"),
        stream_args={
            "stream_type": StreamType.CHAT,
            "model": "gpt-4o",
            "full_response": chat_response,
        },
    )
    return ns


async def run_block(block: Block) -> tuple[dict[str, Any], list[Any]]:
    """Run one block; returns its namespace (locals for wrapped blocks) and what it yielded."""
    code, needs_async, yields = compile_block(block)
    ns = prelude()
    local: dict[str, Any] = {}
    ns["__locals__"] = local
    exec(code, ns)
    produced: list[Any] = []
    if yields:
        produced = [item async for item in ns["__example__"]()]
    elif needs_async:
        await ns["__example__"]()
    return {**ns, **local}, produced


Check = Callable[[dict[str, Any], list[Any]], bool]

CHECKS: dict[str, Check] = {
    "basic-usage": lambda ns, out: (
        ns["sent"][-1] == "data: [DONE]\n\n"
        and len(ns["sent"]) > 2
        and all(s.startswith('data: {"id":"chatcmpl-example"') for s in ns["sent"][:-1])
    ),
    "with-full-features": lambda ns, out: (
        len(out) > 2
        and all(s.startswith("data: {") for s in out)
        and ns["metrics_tracker"].get_streaming_stats()["completed_streams"] == 1
    ),
    "chatstreaminggenerator": lambda ns, out: (
        ns["chunk"].is_last and ns["chunk"].data["object"] == "chat.completion.chunk"
    ),
    "completionstreaminggenerator": lambda ns, out: (
        ns["chunk"].is_last and ns["chunk"].data["object"] == "text_completion"
    ),
    "sseformatter": lambda ns, out: (
        ns["formatted"].startswith("data: {")
        and ns["formatted"].endswith("\n\n")
        and ns["done"] == "data: [DONE]\n\n"
        and '"code":"stream_timeout"' in ns["error_formatted"]
    ),
    "jsonlinesformatter": lambda ns, out: (
        ns["formatted"].startswith('{"type":"data","sequence":0,')
        and ns["formatted"].endswith("\n")
    ),
    "plaintextformatter": lambda ns, out: ns["formatted"] == "Hello world",
    "tokenchunker": lambda ns, out: (
        ns["tokens"] == ["Hello", ",", "world", "!"]
        and "".join(ns["chunks"]) == "Long text here..."
    ),
    "deltagenerator": lambda ns, out: ns["delta"]["audio"]["transcript"] == "Hello",
    "progresstracker": lambda ns, out: ns["progress"] == 10.0 and ns["ttfc"] is not None,
    "adaptivechunker": lambda ns, out: ns["size"] == 6,
    "streamcontext": lambda ns, out: ns["context"].chunk_delay_seconds == 0.05,
    "streamchunk": lambda ns, out: ns["chunk"].data == {"content": "Hello"},
    "streammetrics": lambda ns, out: ns["metrics"].stream_id == "stream-123",
    "streamerror": lambda ns, out: ns["error"].to_dict()["code"] == "stream_timeout",
    "error-handling": lambda ns, out: len(out) > 2,
    "custom-generators": lambda ns, out: (
        [c.data for c in out] == ns["process_response"](ns["response"])
    ),
    "custom-formatters": lambda ns, out: (
        ns["CustomFormatter"]().format(ns["chunk"]).startswith("CHUNK:")
    ),
    "metrics-integration": lambda ns, out: out == [],  # comments only: it must parse and run
    "streams-not-timing-out": lambda ns, out: ns["chunk"].is_last,
    "metrics-not-tracking": lambda ns, out: ns["manager"].metrics_tracker is ns["metrics_tracker"],
    "slow-streaming": lambda ns, out: ns["chunk"].is_last,
}


def test_document_has_the_expected_python_examples() -> None:
    ids = [b.id for b in PYTHON]
    assert len(ids) == len(set(ids))
    assert len(PYTHON) >= 20
    assert set(CHECKS) == set(ids), set(CHECKS) ^ set(ids)
    assert {"json", "bash", ""} <= {b.lang for b in BLOCKS}  # skipped by language tag


@pytest.mark.parametrize("block", PYTHON, ids=[b.id for b in PYTHON])
async def test_example_runs_as_written(block: Block) -> None:
    ns, produced = await run_block(block)
    assert CHECKS[block.id](ns, produced), f"{block.id}: unexpected result {produced[:3]!r}"
