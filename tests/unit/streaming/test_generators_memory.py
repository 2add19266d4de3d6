"""Generators make their units on demand: same chunks as the eager lists, little memory held.

A slow stream is open for minutes, so what its plan holds is per-connection memory of the
producer (S5: 286 KiB per open 600-token stream when every token had its dict, tuple and list).
"""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import pytest

from fakeai.content import build_chat_completion, build_text_completion, split_pieces
from fakeai.streaming.generators import ChatStreamingGenerator, CompletionStreamingGenerator
from fakeai.streaming.generators._common import Delta, LazySteps, TextUnits, Unit, group_units
from fakeai.streaming.generators.chat import MessageUnits, merge_chat_deltas, message_units
from fakeai.timing import TimingPlan


def eager_message_units(message: dict[str, Any]) -> list[Unit]:
    """The eager algorithm the lazy units replace (reference for equality)."""
    units: list[Unit] = []
    content = message.get("content")
    if isinstance(content, str) and content:
        units.extend([({"content": p}, 1)] for p in split_pieces(content))
    elif isinstance(message.get("refusal"), str) and message["refusal"]:
        units.extend([({"refusal": p}, 1)] for p in split_pieces(message["refusal"]))
    for i, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        header: Delta = {
            "tool_calls": [
                {
                    "index": i,
                    "id": call.get("id"),
                    "type": call.get("type", "function"),
                    "function": {"name": function.get("name", ""), "arguments": ""},
                }
            ]
        }
        pieces = split_pieces(function.get("arguments") or "")
        if not pieces:
            units.append([(header, 0)])
            continue
        frags: list[Unit] = [
            [({"tool_calls": [{"index": i, "function": {"arguments": p}}]}, 1)] for p in pieces
        ]
        frags[0].insert(0, (header, 0))
        units.extend(frags)
    if not units:
        return [[({"role": "assistant", "content": ""}, 0)]]
    first, tokens = units[0][0]
    units[0][0] = ({"role": "assistant", **first}, tokens)
    return units


def call(i: int, args: str) -> dict[str, Any]:
    return {"id": f"call_{i}", "type": "function", "function": {"name": f"f{i}", "arguments": args}}


MESSAGES: list[dict[str, Any]] = [
    {"role": "assistant", "content": "Hello world! It's 12345 o'clock.  "},
    {"role": "assistant", "content": None, "refusal": "I can't help with that."},
    {"role": "assistant", "content": None, "tool_calls": [call(0, '{"q": "x", "n": 3}')]},
    {"role": "assistant", "content": None, "tool_calls": [call(0, ""), call(1, '{"a":1}')]},
    {"role": "assistant", "content": "Sure.", "tool_calls": [call(0, "{}")]},
    {"role": "assistant", "content": ""},
    {"role": "assistant", "content": None, "tool_calls": [call(0, "")]},
]


@pytest.mark.parametrize("message", MESSAGES)
def test_lazy_message_units_equal_the_eager_ones(message: dict[str, Any]) -> None:
    units = MessageUnits(message)
    expected = eager_message_units(message)
    assert list(units) == expected
    assert list(units) == expected  # iterable again: a plan may be walked twice
    assert message_units(message) == expected
    assert len(units) == len(expected)
    assert units.tokens == sum(t for u in expected for _, t in u)
    assert units.deltas == sum(len(u) for u in expected)


@pytest.mark.parametrize("chunk_tokens", [1, 2, 3, 7])
@pytest.mark.parametrize("message", MESSAGES)
def test_lazy_steps_group_like_group_units(message: dict[str, Any], chunk_tokens: int) -> None:
    expected = group_units(eager_message_units(message), chunk_tokens, merge_chat_deltas)
    steps = LazySteps(MessageUnits(message), chunk_tokens, merge_chat_deltas)
    assert list(steps) == expected
    assert len(steps) == len(expected)
    assert steps.tokens == sum(t for s in expected for _, t in s)
    assert steps.deltas == sum(len(s) for s in expected)


def test_text_units_rebuild_the_text_piece_by_piece() -> None:
    text = "Ünïcode wörds, tabs\tand\nnewlines — 3.14159 and 1000000!  "
    units = TextUnits(text, lambda p: {"text": p})
    assert list(units.pieces()) == split_pieces(text)
    assert "".join(u[0][0]["text"] for u in units) == text
    assert len(units) == units.tokens == units.deltas == len(split_pieces(text))


def _retained(build: Any) -> tuple[Any, int]:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        obj = build()
        gc.collect()
        return obj, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_a_600_token_chat_plan_holds_a_few_bytes_per_token_not_a_dict_each() -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    full = build_chat_completion(
        {**body, "max_tokens": 600, "ignore_eos": True},
        completion_id="chatcmpl-m",
        created=1,
        seed=5,
    )
    assert full["usage"]["completion_tokens"] == 600
    plans, size = _retained(lambda: ChatStreamingGenerator().plan_choices(full))
    assert plans[0].tokens == 600
    # Eager lists held ~300 bytes per token (180 KiB here); offsets are 4 bytes per token.
    assert size < 8 * 1024, size


def test_a_600_token_completion_plan_is_small_too() -> None:
    full = build_text_completion(
        {"model": "gpt-4o", "prompt": "hi", "max_tokens": 600, "ignore_eos": True},
        completion_id="cmpl-m",
        created=1,
        seed=5,
    )
    plans, size = _retained(lambda: CompletionStreamingGenerator().plan_choices(full))
    assert plans[0].tokens == 600
    assert size < 8 * 1024, size


def test_timing_plan_offsets_are_compact_and_exact() -> None:
    plan, size = _retained(lambda: TimingPlan(0.25, tuple(0.01 * (1 + k % 3) for k in range(599))))
    assert plan.tokens == 600
    assert plan.offset(0) == 0.25
    assert plan.offset(3) == pytest.approx(0.25 + 0.01 + 0.02 + 0.03)
    assert list(plan.offsets())[-1] == plan.total_s
    # The itl tuple (~5 KiB of pointers, ~14 KiB of floats) plus 8 bytes per offset.
    assert size < 30 * 1024, size
