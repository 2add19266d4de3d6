"""What every generator shares: response normalisation, pacing on absolute deadlines, and the
step-interleaved emission of per-choice deltas.

A generator turns each choice of a full response into *units* (one token piece each, with the
deltas that carry it), groups ``chunk_tokens`` units into a *step*, and emits step ``k`` of every
choice when the step's last token is due: ``origin + plan.offset(token)``. Deadlines are
absolute, so per-chunk work and oversleep never accumulate (see :mod:`fakeai.timing`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from fakeai.streaming.base import StreamChunk, StreamContext, StreamingGenerator
from fakeai.timing import LatencyModel, TimingPlan, sleep_until

__all__ = [
    "ChoicePlan",
    "ChoiceStreamGenerator",
    "Delta",
    "Pacer",
    "emit_steps",
    "group_units",
    "make_pacer",
    "stream_usage",
    "to_dict",
]

Delta = dict[str, Any]
Unit = list[tuple[Delta, int]]
"""The deltas that carry one token piece, each with the tokens it counts (headers count 0)."""


def to_dict(obj: Any) -> dict[str, Any]:
    """A full response as a plain dict: dicts as they are, pydantic models, msgspec structs and
    dataclasses converted (JSON-compatible, ``None`` fields kept)."""
    if isinstance(obj, dict):
        return obj
    if isinstance(obj, Mapping):
        return dict(obj)
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        result = dump()
        if isinstance(result, dict):
            return result
    if isinstance(obj, msgspec.Struct):
        built = msgspec.to_builtins(obj)
        if isinstance(built, dict):
            return built
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(
        "full_response must be a dict, a pydantic model, a msgspec Struct or a dataclass; "
        f"got {type(obj).__name__}"
    )


class Pacer:
    """Waits for token deadlines; does nothing at all (no sleep, no yield) when inactive."""

    __slots__ = ("_gap", "_origin", "_plan", "active")

    def __init__(self, plan: TimingPlan | None, gap_s: float, origin: float | None) -> None:
        self._plan = plan if plan is not None and plan.total_s > 0 else None
        self._gap = gap_s
        self.active = self._plan is not None or gap_s > 0
        self._origin = 0.0
        if self.active:
            self._origin = origin if origin is not None else asyncio.get_running_loop().time()

    def due(self, token: int) -> float:
        """Loop time when ``token`` (0-based) is due; the origin when inactive."""
        if self._plan is not None:
            return self._origin + self._plan.offset(token)
        return self._origin + token * self._gap

    async def wait(self, token: int) -> None:
        if self.active:
            await sleep_until(self.due(token))


def make_pacer(
    context: StreamContext, latency_manager: LatencyModel | None, output_tokens: int
) -> Pacer:
    """The pacing of one stream.

    With latency simulation on: the latency manager's plan, or, without a manager, a fixed plan
    from the context's ``ttft_ms``/``itl_ms`` overrides (a missing one counts as 0). Otherwise,
    or when neither is available, ``chunk_delay_seconds`` between steps (0 = no waiting at all).
    Call it from inside the generator body, so the origin defaults to the first ``__anext__``.
    """
    plan: TimingPlan | None = None
    tokens = max(1, output_tokens)
    if context.enable_latency_simulation:
        if latency_manager is not None:
            plan = latency_manager.plan(
                context.model,
                output_tokens=tokens,
                prompt_tokens=context.prompt_tokens,
                cached_tokens=context.cached_tokens,
                seed=context.seed,
                ttft_ms=context.ttft_ms,
                itl_ms=context.itl_ms,
            )
        elif context.ttft_ms is not None or context.itl_ms is not None:
            plan = TimingPlan.fixed(
                (context.ttft_ms or 0.0) / 1000.0, (context.itl_ms or 0.0) / 1000.0, tokens
            )
    return Pacer(plan, 0.0 if plan is not None else context.chunk_delay_seconds, context.start_time)


Merger = Callable[[Delta, Delta], Delta | None]


def group_units(units: list[Unit], chunk_tokens: int, merge: Merger) -> list[Unit]:
    """Steps of ``chunk_tokens`` units each; adjacent deltas in a step are merged when ``merge``
    returns the combined delta (e.g. two content pieces), else kept as separate chunks."""
    if chunk_tokens <= 1:
        return units
    steps: list[Unit] = []
    for start in range(0, len(units), chunk_tokens):
        step: Unit = []
        for unit in units[start : start + chunk_tokens]:
            for delta, tokens in unit:
                if step:
                    merged = merge(step[-1][0], delta)
                    if merged is not None:
                        step[-1] = (merged, step[-1][1] + tokens)
                        continue
                step.append((delta, tokens))
        steps.append(step)
    return steps


@dataclass(slots=True)
class ChoicePlan:
    """One choice, ready to stream: its steps (already grouped) and its finish chunk."""

    index: int
    steps: list[Unit]
    finish: dict[str, Any] | None
    """The finish chunk's choice object, emitted right after the last step (None: no finish)."""
    finish_reason: str | None = None
    tokens: int = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = sum(t for step in self.steps for _, t in step)


def stream_usage(full: Mapping[str, Any], prompt_tokens: int, streamed: int) -> dict[str, Any]:
    """The usage chunk's ``usage``: the full response's, with ``completion_tokens`` equal to the
    pieces actually streamed (they agree for builder-made responses)."""
    usage = dict(full.get("usage") or {})
    prompt = usage.get("prompt_tokens")
    if not isinstance(prompt, int):
        prompt = prompt_tokens
    usage["prompt_tokens"] = prompt
    usage["completion_tokens"] = streamed
    usage["total_tokens"] = prompt + streamed
    usage.setdefault("prompt_tokens_details", {"cached_tokens": 0})
    usage.setdefault("completion_tokens_details", {"reasoning_tokens": 0})
    return usage


async def emit_steps(
    context: StreamContext,
    pacer: Pacer,
    header: dict[str, Any],
    choices: list[ChoicePlan],
    make_choice: Callable[[int, Delta], dict[str, Any]],
    chunk_type: str,
    chunk_tokens: int,
    usage: dict[str, Any] | None,
) -> AsyncIterator[StreamChunk]:
    """Emit step ``k`` of every choice (in index order) at the deadline of its last token, each
    choice's finish chunk right after its last step, then the usage chunk if any."""
    total = sum(len(d) for c in choices for d in c.steps) + sum(
        c.finish is not None for c in choices
    )
    total += usage is not None
    max_tokens = max((c.tokens for c in choices), default=0)
    n_steps = max((len(c.steps) for c in choices), default=0)
    sid = context.stream_id
    seq = 0
    for k in range(n_steps):
        await pacer.wait(max(0, min((k + 1) * chunk_tokens, max_tokens) - 1))
        for c in choices:
            if k >= len(c.steps):
                continue
            for delta, tokens in c.steps[k]:
                yield StreamChunk(
                    chunk_id=f"{sid}-{seq}",
                    sequence_number=seq,
                    data={**header, "choices": [make_choice(c.index, delta)]},
                    chunk_type=chunk_type,
                    token_count=tokens,
                    is_first=seq == 0,
                    is_last=seq == total - 1,
                )
                seq += 1
            if k == len(c.steps) - 1 and c.finish is not None:
                yield StreamChunk(
                    chunk_id=f"{sid}-{seq}",
                    sequence_number=seq,
                    data={**header, "choices": [c.finish]},
                    chunk_type=chunk_type,
                    token_count=0,
                    is_first=seq == 0,
                    is_last=seq == total - 1,
                    metadata={"finish_reason": c.finish_reason, "choice_index": c.index},
                )
                seq += 1
    if usage is not None:
        yield StreamChunk(
            chunk_id=f"{sid}-{seq}",
            sequence_number=seq,
            data={**header, "choices": [], "usage": usage},
            chunk_type=chunk_type,
            token_count=0,
            is_first=seq == 0,
            is_last=True,
        )


class ChoiceStreamGenerator(StreamingGenerator):
    """Streams a response's choices step by step: the shared part of chat and completions.

    Subclasses say how a response becomes :class:`ChoicePlan` objects (:meth:`plan_choices`),
    what every chunk's fixed fields are (:meth:`header`) and how one delta becomes a choice
    (:meth:`choice`).
    """

    chunk_type: str = ""

    def __init__(
        self, latency_manager: LatencyModel | None = None, *, chunk_tokens: int = 1
    ) -> None:
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be >= 1; got {chunk_tokens}")
        self.latency_manager = latency_manager
        self.chunk_tokens = chunk_tokens

    def plan_choices(self, full: Mapping[str, Any]) -> list[ChoicePlan]:
        raise NotImplementedError

    def header(self, full: Mapping[str, Any], context: StreamContext) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def choice(index: int, delta: Delta) -> dict[str, Any]:
        raise NotImplementedError

    async def generate(
        self, context: StreamContext, full_response: Any
    ) -> AsyncIterator[StreamChunk]:
        """Chunks of ``full_response`` at their token deadlines."""
        full = to_dict(full_response)
        choices = self.plan_choices(full)
        streamed = sum(c.tokens for c in choices)
        pacer = make_pacer(
            context, self.latency_manager, max((c.tokens for c in choices), default=0)
        )
        usage = (
            stream_usage(full, context.prompt_tokens, streamed) if context.include_usage else None
        )
        async for chunk in emit_steps(
            context,
            pacer,
            self.header(full, context),
            choices,
            self.choice,
            self.chunk_type,
            self.chunk_tokens,
            usage,
        ):
            yield chunk
