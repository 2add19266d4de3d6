"""What every generator shares: response normalisation, pacing on absolute deadlines, and the
step-interleaved emission of per-choice deltas.

A generator turns each choice of a full response into *units* (one token piece each, with the
deltas that carry it), groups ``chunk_tokens`` units into a *step*, and emits step ``k`` of every
choice when the step's last token is due: ``origin + plan.offset(token)``. Deadlines are
absolute, so per-chunk work and oversleep never accumulate (see :mod:`fakeai.timing`).

Memory: a stream is open for as long as its tokens take (minutes, for slow streams), so what it
holds while open is per-connection memory. Steps are therefore *made on demand*: a plan keeps
the response text and 4-byte piece offsets (:class:`TextUnits`, :class:`LazySteps`), not a
dict, tuple and list per token (~300 bytes per token, 180 KiB for a 600-token stream).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from fakeai.content.tokenizer import piece_ends
from fakeai.streaming.base import StreamChunk, StreamContext, StreamingGenerator
from fakeai.timing import READY, LatencyModel, Ticker, TimingPlan, ticker

__all__ = [
    "ChoicePlan",
    "ChoiceStreamGenerator",
    "Delta",
    "LazySteps",
    "PacedGenerator",
    "Pacer",
    "Steps",
    "TextUnits",
    "emit_steps",
    "group_units",
    "make_pacer",
    "stream_usage",
    "to_dict",
]

Delta = dict[str, Any]
Unit = list[tuple[Delta, int]]
"""The deltas that carry one token piece, each with the tokens it counts (headers count 0)."""


class Steps(Protocol):
    """What a plan needs of its units or steps: how many, and each in order (a ``list`` is
    one; :class:`TextUnits` and :class:`LazySteps` make theirs on demand)."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Unit]: ...


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
    """Waits for token deadlines; does nothing at all (no sleep, no yield) when inactive.

    Deadlines come from a :class:`TimingPlan`, or, for exact fixed timings, from
    ``first_s + token * gap_s`` (no per-token storage: a 600-token plan is ~10 KiB).
    """

    __slots__ = ("_first", "_gap", "_origin", "_plan", "_ticker", "active")

    def __init__(
        self, plan: TimingPlan | None, gap_s: float, origin: float | None, first_s: float = 0.0
    ) -> None:
        self._plan = plan if plan is not None and plan.total_s > 0 else None
        self._gap = gap_s
        self._first = first_s
        self.active = self._plan is not None or gap_s > 0 or first_s > 0
        self._origin = 0.0
        self._ticker: Ticker | None = None
        if self.active:
            loop = asyncio.get_running_loop()
            self._ticker = ticker(loop)
            self._origin = origin if origin is not None else loop.time()

    def due(self, token: int) -> float:
        """Loop time when ``token`` (0-based) is due; the origin when inactive."""
        if self._plan is not None:
            return self._origin + self._plan.offset(token)
        return self._origin + self._first + token * self._gap

    def wait(self, token: int) -> Awaitable[None]:
        """Await it to wait until ``token`` is due (the loop's shared :class:`~fakeai.timing.
        Ticker`; no coroutine per call); completes at once when inactive or already due."""
        if self._ticker is None:
            return READY
        return self._ticker.wait(self.due(token))


def _override_s(name: str, value: float | None) -> float:
    ms = 0.0 if value is None else float(value)
    if not (math.isfinite(ms) and ms >= 0):
        raise ValueError(f"{name} must be a finite number >= 0 (ms), got {value}")
    return ms / 1000.0


def make_pacer(
    context: StreamContext, latency_manager: LatencyModel | None, output_tokens: int
) -> Pacer:
    """The pacing of one stream.

    With latency simulation on: exact ``ttft_ms`` *and* ``itl_ms`` overrides (a missing one
    counts as 0 when there is no latency manager) give fixed deadlines, computed per token;
    otherwise the latency manager's plan. Otherwise, or when neither is available,
    ``chunk_delay_seconds`` between steps (0 = no waiting at all). Call it from inside the
    generator body, so the origin defaults to the first ``__anext__``.
    """
    tokens = max(1, output_tokens)
    ttft, itl = context.ttft_ms, context.itl_ms
    if context.enable_latency_simulation:
        exact = ttft is not None and itl is not None
        if exact or (latency_manager is None and (ttft is not None or itl is not None)):
            # Overrides are exact (no jitter, prefill or load: LatencyModel.plan's contract),
            # so the schedule is arithmetic and needs no per-token plan.
            return Pacer(
                None, _override_s("itl_ms", itl), context.start_time, _override_s("ttft_ms", ttft)
            )
        if latency_manager is not None:
            plan = latency_manager.plan(
                context.model,
                output_tokens=tokens,
                prompt_tokens=context.prompt_tokens,
                cached_tokens=context.cached_tokens,
                seed=context.seed,
                ttft_ms=ttft,
                itl_ms=itl,
            )
            return Pacer(plan, 0.0, context.start_time)
    return Pacer(None, context.chunk_delay_seconds, context.start_time)


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


class TextUnits:
    """One unit per token piece of ``text``, each ``[(make(piece), 1)]``, made when iterated.

    Holds the text and 4 bytes per piece (:func:`~fakeai.content.tokenizer.piece_ends`).
    ``first`` is merged into the first unit's delta (the chat role). Every unit is one delta
    of one token, so ``tokens`` and ``deltas`` equal the length.
    """

    __slots__ = ("_ends", "_first", "_make", "_text")

    def __init__(self, text: str, make: Callable[[str], Delta], first: Delta | None = None) -> None:
        self._text = text
        self._ends = piece_ends(text)
        self._make = make
        self._first = first

    def __len__(self) -> int:
        return len(self._ends)

    @property
    def tokens(self) -> int:
        return len(self._ends)

    @property
    def deltas(self) -> int:
        return len(self._ends)

    def pieces(self) -> Iterator[str]:
        """The token pieces, in order."""
        text, start = self._text, 0
        for end in self._ends:
            yield text[start:end]
            start = end

    def __iter__(self) -> Iterator[Unit]:
        make, first = self._make, self._first
        for piece in self.pieces():
            if first is not None:
                yield [({**first, **make(piece)}, 1)]
                first = None
            else:
                yield [(make(piece), 1)]


class LazySteps:
    """``units`` grouped ``chunk_tokens`` at a time (as :func:`group_units`), one step at a time.

    ``tokens`` and ``deltas`` (the chunks the steps make) come from ``units`` when it knows them
    (:class:`TextUnits`); otherwise, or when merging may change the delta count, they are
    counted by grouping once at construction.
    """

    __slots__ = ("_k", "_merge", "_units", "deltas", "tokens")

    def __init__(self, units: Steps, chunk_tokens: int, merge: Merger) -> None:
        self._units, self._k, self._merge = units, max(1, chunk_tokens), merge
        tokens = getattr(units, "tokens", None)
        deltas = getattr(units, "deltas", None)
        if not isinstance(tokens, int) or not isinstance(deltas, int) or self._k > 1:
            tokens = deltas = 0
            for step in self:
                deltas += len(step)
                tokens += sum(t for _, t in step)
        self.tokens: int = tokens
        self.deltas: int = deltas

    def __len__(self) -> int:
        return -(-len(self._units) // self._k)

    def __iter__(self) -> Iterator[Unit]:
        if self._k == 1:
            yield from self._units
            return
        it = iter(self._units)
        while True:
            group = [u for _, u in zip(range(self._k), it, strict=False)]
            if not group:
                return
            yield group_units(group, self._k, self._merge)[0]


@dataclass(slots=True)
class ChoicePlan:
    """One choice, ready to stream: its steps (already grouped) and its finish chunk."""

    index: int
    steps: Steps
    """A list of steps, or steps made on demand (:class:`LazySteps`), iterated once."""
    finish: dict[str, Any] | None
    """The finish chunk's choice object, emitted right after the last step (None: no finish)."""
    finish_reason: str | None = None
    tokens: int = field(init=False)
    deltas: int = field(init=False)
    """Chunks the steps make (the finish chunk not counted)."""

    def __post_init__(self) -> None:
        tokens = getattr(self.steps, "tokens", None)
        deltas = getattr(self.steps, "deltas", None)
        if isinstance(tokens, int) and isinstance(deltas, int):
            self.tokens, self.deltas = tokens, deltas
        else:
            self.tokens = sum(t for step in self.steps for _, t in step)
            self.deltas = sum(len(step) for step in self.steps)


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


PLAN_TURN_TOKENS = 1024
"""A choice of more tokens than this gives the loop a turn once it is planned. Planning a
choice of 32,768 pieces holds the loop ~17 ms (a 1 ms ``asyncio.sleep`` probe's worst lag
while a chat stream of ``n=16`` such choices starts), so 16 of them planned in one go held it
for over 100 ms; one at a time, for one choice's planning at most."""


async def _plan_in_turns(gen: ChoiceStreamGenerator, full: dict[str, Any]) -> list[ChoicePlan]:
    """``gen.plan_choices(full)``, one choice at a time when there are several, with a turn for
    the loop after each long one (:data:`PLAN_TURN_TOKENS`): the same plans, in order."""
    raw = full.get("choices") or ()
    if len(raw) < 2:
        return gen.plan_choices(full)
    plans: list[ChoicePlan] = []
    for pos, choice in enumerate(raw):
        one = to_dict(choice)
        if "index" not in one:  # plan_choices numbers choices by position otherwise
            one = {**one, "index": pos}
        planned = gen.plan_choices({**full, "choices": [one]})
        plans += planned
        if any(p.tokens > PLAN_TURN_TOKENS for p in planned):
            await asyncio.sleep(0)
    return plans


async def emit_steps(
    gen: ChoiceStreamGenerator, context: StreamContext, full_response: Any
) -> AsyncIterator[StreamChunk]:
    """The chunks of ``full_response`` as ``gen`` makes them: step ``k`` of every choice (in
    index order) at the deadline of its last token, each choice's finish chunk right after its
    last step, then the usage chunk if any.

    One async generator from plan to chunks (planning happens at the first ``__anext__``, so
    the pacer's default origin is the start of iteration): each chunk costs one frame to
    resume, plus the shared timer's future when it has to wait.
    """
    full = to_dict(full_response)
    choices = await _plan_in_turns(gen, full)
    chunk_tokens = gen.chunk_tokens
    max_tokens = max((c.tokens for c in choices), default=0)
    pacer = make_pacer(context, gen.latency_manager, max_tokens)
    usage = None
    if context.include_usage:
        usage = stream_usage(full, context.prompt_tokens, sum(c.tokens for c in choices))
    header = gen.header(full, context)
    make_choice = gen.choice
    chunk_type = gen.chunk_type
    total = sum(c.deltas for c in choices) + sum(c.finish is not None for c in choices)
    total += usage is not None
    # (choice, its step count, its step iterator), zipped once rather than once per step.
    plan = [(c, len(c.steps), iter(c.steps)) for c in choices]
    n_steps = max((n for _, n, _ in plan), default=0)
    sid = context.stream_id
    wait, active = pacer.wait, pacer.active
    seq = 0
    for k in range(n_steps):
        if active:
            await wait(max(0, min((k + 1) * chunk_tokens, max_tokens) - 1))
        for c, n, it in plan:
            if k >= n:
                continue
            for delta, tokens in next(it):
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
            if k == n - 1 and c.finish is not None:
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


class PacedGenerator(StreamingGenerator):
    """A generator paced by a latency model (:func:`make_pacer`), ``chunk_tokens`` per step."""

    def __init__(
        self, latency_manager: LatencyModel | None = None, *, chunk_tokens: int = 1
    ) -> None:
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be >= 1; got {chunk_tokens}")
        self.latency_manager = latency_manager
        self.chunk_tokens = chunk_tokens


class ChoiceStreamGenerator(PacedGenerator):
    """Streams a response's choices step by step: the shared part of chat and completions.

    Subclasses say how a response becomes :class:`ChoicePlan` objects (:meth:`plan_choices`),
    what every chunk's fixed fields are (:meth:`header`) and how one delta becomes a choice
    (:meth:`choice`).
    """

    chunk_type: str = ""

    def plan_choices(self, full: Mapping[str, Any]) -> list[ChoicePlan]:
        raise NotImplementedError

    def header(self, full: Mapping[str, Any], context: StreamContext) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def choice(index: int, delta: Delta) -> dict[str, Any]:
        raise NotImplementedError

    def generate(self, context: StreamContext, full_response: Any) -> AsyncIterator[StreamChunk]:
        """Chunks of ``full_response`` at their token deadlines (:func:`emit_steps`)."""
        return emit_steps(self, context, full_response)
