"""A Responses API stream: its events, paced, one log entry each.

A Responses request reaches the producer as a chat generation request whose stream id is
``resp_…`` (:func:`fakeai.streams.positions.is_response_id`): the id is the response id, and
the edge has already put the history of ``previous_response_id`` in front of the ``input``.
:meth:`.runner.StreamRun.run` hands such a stream here, after the checks every stream gets.

Sequence:

1. The response and its events are built with :func:`fakeai.content.responses_api.
   build_response` (in a worker thread when large, as chat responses are, and whenever the
   request offers the image generation tool: drawing its PNGs takes up to ~0.2 s, as
   ``fakeai.content.images.refinements("k", "1024x1536", 3)`` measures).
2. One timing plan covers the output tokens (the model's latency profile, the request's
   ``X-FakeAI-TTFT-Ms`` / ``-ITL-Ms`` / seed, as for chat). Event k is entry ``seq`` k + 1, its
   JSON encoded once here (``sequence_number`` = seq - 1), and is due on an absolute deadline:
   structural events with the token before them (``response.created`` and the events up to the
   first delta at acceptance), a delta with its own token. Whatever the request's ``stream``
   flag, the log holds every event: ``stream: false`` only changes what the edge answers.
3. Taken over after a failover: the same events are built again (everything is derived from
   the stream id and the seed) and those the log holds (``seq <= last seq``) are skipped.
4. The end: ``d`` after ``response.completed`` (its ``completed_at`` stamped when it is
   written) / ``response.incomplete``; ``e`` (cancelled,
   timeout, shutdown, ...) when the stream stops early; the edge shows an ``e`` entry as the
   Responses ``error`` event, and retrieve as status ``cancelled`` or ``failed``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fakeai.content import InvalidRequestValue
from fakeai.content.image_tool import image_tools
from fakeai.content.responses_api import BuiltResponse, build_response, stamp_completed
from fakeai.latency_profiles import get_latency_manager
from fakeai.services.producer.ending import failure, invalid, timeout
from fakeai.services.producer.records import Outcome
from fakeai.streams.log import Kind
from fakeai.timing import TimingPlan, wait_until
from fakeai.wire import encode

if TYPE_CHECKING:
    from fakeai.services.producer.runner import StreamRun

__all__ = [
    "Completed",
    "emit_events",
    "finish_reason",
    "plan_events",
    "stream_built",
    "stream_events",
]

logger = logging.getLogger(__name__)

_YIELD_EVERY = 64
"""Events a stream writes between two turns it gives the loop (as chat chunks do)."""


def finish_reason(response: dict[str, object]) -> str:
    """The chat-style finish reason of a finished response (meta and metrics speak chat)."""
    if response.get("status") == "incomplete":
        return "length"
    output = response.get("output")
    items = output if isinstance(output, list) else []
    if any(isinstance(i, dict) and i.get("type") == "function_call" for i in items):
        return "tool_calls"
    return "stop"


async def _build(run: StreamRun) -> BuiltResponse:
    req = run.request
    reasoning = get_latency_manager().get_profile(req.model).reasoning

    def make() -> BuiltResponse:
        return build_response(
            req.body,
            response_id=req.stream_id,
            created_at=req.created_ms // 1000,
            seed=req.seed,
            model=req.model,
            reasoning_model=reasoning,
        )

    return await run.build(make, heavy=bool(image_tools(req.body)))  # PNGs: off the loop


def plan_events(run: StreamRun, built: BuiltResponse) -> TimingPlan:
    simulate, ttft_ms, itl_ms = run.timing()
    tokens = max(1, sum(built.tokens))
    latency = run.deps.latency
    if not simulate or latency is None:
        return TimingPlan.immediate(tokens)
    usage = built.response.get("usage") or {}
    return latency.plan(
        run.request.model,
        output_tokens=tokens,
        prompt_tokens=int(usage.get("input_tokens") or 0),
        seed=run.plan_seed(),
        ttft_ms=ttft_ms,
        itl_ms=itl_ms,
    )


async def stream_events(run: StreamRun, skip: int) -> str:
    """Produce the stream's events after entry ``skip``, then its end (module docstring);
    returns the stream's final status."""

    def completed(built: BuiltResponse, tokens: int, prompt: int) -> Outcome:
        usage = built.response.get("usage") or {}
        return Outcome(
            finish_reason=finish_reason(built.response),
            completion_tokens=int(usage.get("output_tokens") or tokens),
            prompt_tokens=prompt,
        )

    return await stream_built(run, skip, lambda: _build(run), "response", completed)


Completed = Callable[[BuiltResponse, int, int], Outcome]
"""The outcome of a stream whose events all went out: ``(built, tokens, prompt_tokens)``."""


async def stream_built(
    run: StreamRun,
    skip: int,
    build: Callable[[], Awaitable[BuiltResponse]],
    what: str,
    completed: Completed,
) -> str:
    """The path every stream of typed events takes (this module's, and :mod:`.media_events`'):
    ``build`` its events, plan them, write those after entry ``skip`` on their deadlines
    (counted as a running stream of the model meanwhile), then its end: ``completed`` when
    every event went out, else cancelled / timeout; a request the builders refuse ends with
    ``invalid_request``, a build that fails with ``generation_error``. Returns the stream's
    final status."""
    try:
        built = await build()
        plan = plan_events(run, built)
    except InvalidRequestValue as e:
        logger.warning("stream %s: invalid request: %s", run.stream_id, e)
        return await run.ending.finish(skip + 1, skip, invalid(e.param, str(e)))
    except Exception as e:
        logger.warning("stream %s: cannot build the %s: %s", run.stream_id, what, e)
        return await run.ending.finish(skip + 1, skip, failure(e))
    usage = built.response.get("usage") or {}
    prompt = int(usage.get("input_tokens") or 0)
    latency = run.deps.latency
    if latency is not None:
        latency.stream_started(run.request.model)
    try:
        seq, tokens, timed_out = await emit_events(run, built, plan, skip)
    finally:
        if latency is not None:
            latency.stream_finished(run.request.model)
    outcome: Outcome
    if run.end_code is not None:
        outcome = run.ended_outcome(tokens, prompt)
    elif timed_out:
        outcome = timeout(run.deps.settings, tokens, prompt)
    else:
        outcome = completed(built, tokens, prompt)
    seq = max(seq, skip)
    return await run.ending.finish(seq + 1, seq, outcome)


async def emit_events(
    run: StreamRun, built: BuiltResponse, plan: TimingPlan, skip: int
) -> tuple[int, int, bool]:
    """Write the events due after entry ``skip``, each at its deadline, until the end, a
    cancel or the stream's time limit; returns (last seq written, tokens, timed out)."""
    writer = run.deps.writer
    loop = asyncio.get_running_loop()
    origin = run.origin()
    limit = loop.time() + run.time_left()
    ended = loop.create_task(run.ended.wait())
    throttle = max(1, writer.max_pending // 4)
    head = run.records.head
    seq = tokens = 0
    last = len(built.events)
    try:
        for event, count in zip(built.events, built.tokens, strict=True):
            tokens += count
            due = origin + (plan.offset(tokens - 1) if tokens else 0.0)
            if seq + 1 > skip:
                if due > limit:
                    await asyncio.wait({ended}, timeout=max(0.0, limit - loop.time()))
                    return seq, tokens - count, run.end_code is None
                if due > loop.time():
                    tick = asyncio.ensure_future(wait_until(due))
                    await asyncio.wait({tick, ended}, return_when=asyncio.FIRST_COMPLETED)
                    tick.cancel()
                if run.end_code is not None or (writer.refused and head in writer.refused):
                    return seq, tokens - count, False
                if seq + 1 == last:  # the response's end: completed_at is now
                    event = stamp_completed(event, time.time())
                item = run.records.entry(seq + 1, Kind.CHUNK, encode(event), count)
                if not writer.put_nowait(item):
                    await writer.put(item)
            seq += 1
            if not seq % _YIELD_EVERY:
                if writer.pending >= throttle:
                    await writer.below(throttle)
                else:
                    await asyncio.sleep(0)
        return seq, tokens, False
    finally:
        ended.cancel()
