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
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from fakeai.content.tokenizer import piece_ends
from fakeai.streaming.base import StreamChunk, StreamContext, StreamingGenerator
from fakeai.streaming.chunking import DeltaGenerator, TokenChunker
from fakeai.streaming.generators._logprobs import LOGPROBS, PieceLogprobs
from fakeai.streaming.generators._pacing import Pacer, make_pacer
from fakeai.streaming.generators._response import CHOICE, USAGE, read_response, to_dict
from fakeai.timing import LatencyModel

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
    ``first`` is merged into the first unit's delta (the chat role); ``logprobs(i)``, when
    given, is piece ``i``'s logprobs, carried under :data:`LOGPROBS`. Every unit is one delta
    of one token, so ``tokens`` and ``deltas`` equal the length.
    """

    __slots__ = ("_ends", "_first", "_logprobs", "_make", "_text")

    def __init__(
        self,
        text: str,
        make: Callable[[str], Delta],
        first: Delta | None = None,
        logprobs: PieceLogprobs | None = None,
    ) -> None:
        self._text = text
        self._ends = piece_ends(text)
        self._make = make
        self._first = first
        self._logprobs = logprobs

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
        make, first, logprobs = self._make, self._first, self._logprobs
        if logprobs is not None:
            for i, piece in enumerate(self.pieces()):
                delta = {**(first or {}), **make(piece), LOGPROBS: logprobs(i)}
                first = None
                yield [(delta, 1)]
            return
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
    raw = full.get("usage")
    usage = dict(to_dict(raw, USAGE, "full_response.usage")) if raw else {}
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
        one = to_dict(choice, CHOICE, f"full_response.choices[{pos}]")
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
    full = read_response(full_response)
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

    ``default_chunk_size``, ``min_chunk_size`` and ``max_chunk_size`` are FakeAI 0.3's
    constructor arguments: they size the ``chunker`` attribute, as upstream's did, and like
    upstream's they do not change the stream (one token piece per chunk; ``chunk_tokens``
    groups pieces).
    """

    chunk_type: str = ""

    def __init__(
        self,
        latency_manager: LatencyModel | None = None,
        default_chunk_size: int = 3,
        min_chunk_size: int = 1,
        max_chunk_size: int = 10,
        *,
        chunk_tokens: int = 1,
    ) -> None:
        super().__init__(latency_manager, chunk_tokens=chunk_tokens)
        self.default_chunk_size = default_chunk_size
        self.chunker = TokenChunker(min_chunk_size=min_chunk_size, max_chunk_size=max_chunk_size)
        self.delta_generator = DeltaGenerator()

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
