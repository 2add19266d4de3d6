"""How a stream ends: its outcome, its terminal entry written durably, and parking.

:meth:`Ending.finish` writes the terminal entry (``d``, or ``e`` with a code of
:class:`~.records.EndCode`) with the meta totals, expiry, ZREM from the active set and the
request's XACK (:meth:`.records.StreamRecords.terminal`), and returns once Redis has taken it:
never an ack before the end is written.

Parking (:meth:`Ending.park`): a request Redis has handed out more than
``settings.max_deliveries`` times (it killed or outlived that many producers) gets a record in
``Keys.deadletter()`` (fields ``sid``, ``partition``, ``id``, ``reason``), then an ``e`` entry
``request_failed`` ("parked after N deliveries ..."), meta status ``error``, and the XACK: it is
never handed out again.

Redis out of memory (issue 10, finding 5). The writer retries refused writes for a few seconds
(:mod:`.writer`); past that, a stream whose data entry was refused stops generating and ends
with ``e`` ``redis_full`` at the seq after the last entry its log really holds (read back:
the entries queued after the refused one were dropped, so there is no hole). If Redis refuses
that terminal entry too, the stream has left the active set anyway (ZREM runs under OOM, in
the same flush), an error says so once, and the entry is written again with a backoff (cap 5 s)
until Redis takes it; the stream's task keeps its slot and its request meanwhile (refreshed,
not acknowledged: if this producer dies, a survivor takes the request over). Once memory is
freed the end lands, durable. Any other refusal of a terminal entry is raised: the request
stays pending, is taken over later, and is parked once it has been handed out too often.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fakeai.config.settings import Settings
from fakeai.services.backoff import Backoff
from fakeai.services.producer.items import Cmds, Final, WriteFailed
from fakeai.services.producer.records import EndCode, Outcome, StreamRecords
from fakeai.services.producer.state import read_states
from fakeai.services.producer.writer import LogWriter
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient

__all__ = ["Ending", "done", "failure", "invalid", "prompt_tokens", "timeout"]

logger = logging.getLogger(__name__)


def done(full: Mapping[str, Any], tokens: int) -> Outcome:
    """A stream that ran to its end: the response's finish reason and usage."""
    usage = full.get("usage") or {}
    choices = full.get("choices") or [{}]
    return Outcome(
        finish_reason=choices[0].get("finish_reason"),
        completion_tokens=int(usage.get("completion_tokens") or tokens),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
    )


def prompt_tokens(full: Mapping[str, Any]) -> int:
    return int((full.get("usage") or {}).get("prompt_tokens") or 0)


def failure(e: Exception) -> Outcome:
    return Outcome(error_code=EndCode.GENERATION_ERROR, error_message=f"generation failed: {e}")


def invalid(param: str, message: str) -> Outcome:
    """``invalid_request`` about request field ``param``."""
    return Outcome(error_code=EndCode.INVALID_REQUEST, error_message=message, error_param=param)


def timeout(settings: Settings, tokens: int = 0, prompt: int = 0) -> Outcome:
    """The stream ran past ``settings.max_stream_s``."""
    return Outcome(
        completion_tokens=tokens,
        prompt_tokens=prompt,
        error_code=EndCode.TIMEOUT,
        error_message=(
            f"the stream ran past this server's limit of {settings.max_stream_s:g} s "
            "(setting max_stream_s)"
        ),
    )


class Ending:
    """Ends one stream (see the module docstring)."""

    def __init__(
        self, records: StreamRecords, writer: LogWriter, redis: RedisClient, keys: Keys
    ) -> None:
        self.records = records
        self.writer = writer
        self.redis = redis
        self.keys = keys

    @property
    def stream_id(self) -> str:
        return self.records.request.stream_id

    async def park(self, seq: int, deliveries: int, max_deliveries: int) -> str:
        """Park the request as failed, after log entry ``seq``; returns the final status."""
        reason = (
            f"parked after {deliveries - 1} deliveries that did not end (setting "
            f"max_deliveries={max_deliveries}): the request killed or outlived its producers"
        )
        logger.error("stream %s: %s", self.stream_id, reason)
        outcome = Outcome(error_code=EndCode.REQUEST_FAILED, error_message=reason)
        try:
            return await self.finish(seq + 1, seq, outcome, before=self.records.parked(reason))
        except WriteFailed as e:
            # Not for lack of memory (that is retried): the request must still never be
            # handed out again.
            logger.error(
                "stream %s: Redis refused its parking (%s); acknowledging the request anyway",
                self.stream_id,
                e,
            )
            await self.writer.write(self.records.ack())
            return "error"

    async def finish(
        self, seq: int, chunks: int, outcome: Outcome, *, before: Cmds | None = None
    ) -> str:
        """Write the terminal entry ``seq`` (after ``before``, when given) and everything that
        ends the stream; under OOM, again until Redis takes it. Returns the final status.

        Raises:
            WriteFailed: Redis refused it for another reason than memory.
        """
        writer = self.writer
        head = self.records.head
        backoff = Backoff(cap_s=5.0)
        pending: list[Cmds | Final] = [] if before is None else [before]
        try:
            if head in writer.refused:
                seq, chunks, outcome = await self._after_refusal(outcome)
            pending.append(self.records.terminal(seq, chunks, outcome))
            while pending:
                try:
                    await writer.write(pending[0])
                    pending.pop(0)
                    continue
                except WriteFailed as e:
                    if not e.oom:
                        raise
                    if backoff.failures == 0:
                        final = pending[-1]
                        if isinstance(final, Final):  # ZREM runs under OOM: no leak meanwhile
                            await writer.put(final.active)
                        logger.error(
                            "stream %s: Redis is out of memory; the stream left the active set "
                            "and its end (%s) is written as soon as Redis takes it",
                            self.stream_id,
                            outcome.error_code or "done",
                        )
                await backoff.sleep()
                if head in writer.refused and isinstance(pending[-1], Final):
                    # A data entry was refused in the same flush as the terminal one: end
                    # after the entries the log really holds.
                    seq, chunks, outcome = await self._after_refusal(outcome)
                    pending[-1] = self.records.terminal(seq, chunks, outcome)
        finally:
            writer.forget(head)
        if backoff.failures:
            logger.warning(
                "stream %s: its end was written after %d retries", self.stream_id, backoff.failures
            )
        # One line per stream is noise at hundreds of streams a second: the ones that did not
        # complete are told at INFO, the rest at DEBUG.
        logger.log(
            logging.DEBUG if outcome.error_code is None else logging.INFO,
            "stream %s: %s (%d chunks, %s)",
            self.stream_id,
            outcome.status,
            chunks,
            outcome.error_code or outcome.finish_reason,
        )
        return outcome.status

    async def _after_refusal(self, outcome: Outcome) -> tuple[int, int, Outcome]:
        """``(terminal seq, chunks, outcome)`` of a stream a data entry of which Redis refused:
        after the last entry its log holds, ``redis_full`` (or ``write_failed``)."""
        why = self.writer.refused.get(self.records.head) or WriteFailed("")
        [state] = await read_states(self.redis, self.keys, [self.stream_id])
        last = state.last_seq
        if outcome.error_code in (EndCode.REDIS_FULL, EndCode.WRITE_FAILED):
            return last + 1, last, outcome
        oom = why.oom
        return (
            last + 1,
            last,
            Outcome(
                completion_tokens=outcome.completion_tokens,
                prompt_tokens=outcome.prompt_tokens,
                error_code=EndCode.REDIS_FULL if oom else EndCode.WRITE_FAILED,
                error_message=(
                    f"Redis is out of memory: it refused the stream's writes ({why})"
                    if oom
                    else f"Redis refused a write of the stream ({why})"
                ),
            ),
        )
