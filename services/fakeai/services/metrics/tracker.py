"""Per-stream state of the metrics consumer, and the samples a finished stream yields (pure).

A stream's samples are folded once, when its terminal entry arrives, and written together with
the stream's idempotency marker (``Keys.ts_seen``): redelivered entries never count twice.

Until then the tracker keeps, per running stream, the emit times of its first and last entries
that carry tokens, the last sequence number and a small sketch of its inter-token gaps (bounded
by the bin count, not by the stream's length). TTFT is taken at the first entry with tokens,
ITL between consecutive entries with tokens: a Responses stream's first entries
(``response.created``, ``in_progress``, the item and part openings) are due at acceptance and
carry none, nor do a chat stream's finish and usage chunks.

Sequence numbers (entry id ``<created_ms>-<seq>``, seq 1 = first entry;
:func:`fakeai.streams.log.entry_seq`) detect what a consumer did not see: a duplicate
(seq ≤ last) is ignored, a gap marks the stream *incomplete*. An incomplete stream (for example
one whose first chunks were read by a consumer that crashed) is rebuilt at its end from the
stream's own log, whose entries carry the producer's append time
(:class:`fakeai.streams.log.Entry` ``t_us``) but no token count (:func:`carries_tokens` tells
from the payload); see :func:`rebuild`.

Event kinds are the log's (:class:`fakeai.streams.log.Kind`), as the one-letter strings the
firehose JSON carries.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import msgspec

from fakeai.streams.log import TERMINAL_KINDS, Entry, Kind, entry_seq
from fakeai.timeseries import Fold, LogSketch
from fakeai.timeseries import names as n
from fakeai.timeseries.histograms import observe
from fakeai.wire.messages import FirehoseEvent, FirehoseStream, RequestStats, decode_done

__all__ = ["FinishedStream", "StreamTracker", "carries_tokens", "fold_finished", "rebuild"]

_CHUNK_KINDS = frozenset({Kind.CHUNK.decode(), Kind.RESPONSE.decode()})
_TERMINAL_KINDS = frozenset(k.decode() for k in TERMINAL_KINDS)
_DONE = Kind.DONE.decode()


@dataclass(slots=True)
class _Running:
    model: str
    accepted_us: int
    first_us: int | None = None
    """Emit time of the first entry with tokens (None until seen, or when one may be missing)."""
    last_us: int | None = None
    """Emit time of the last entry with tokens."""
    prev_us: int | None = None
    """Emit time of the previous entry with tokens, None after a gap (no ITL across it)."""
    last_seq: int = 0
    complete: bool = True
    itl: LogSketch = field(default_factory=LogSketch)


@dataclass(frozen=True, slots=True)
class FinishedStream:
    """Everything the consumer knows about a stream when its terminal entry arrives."""

    stream_id: str
    model: str
    kind: str
    """``d`` done or ``e`` error."""
    accepted_us: int
    terminal_us: int
    tokens: int
    first_us: int | None
    last_us: int | None
    itl: LogSketch
    complete: bool
    """Whether every chunk was seen (else :func:`rebuild` from the log before folding)."""
    error_code: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    stats: RequestStats | None = None
    """The request's figures, from the terminal event (None in older entries)."""


class StreamTracker:
    """Folds firehose events per stream; returns a :class:`FinishedStream` on terminal events.

    Events come one by one (:meth:`observe`) or as one stream's group of a batch entry
    (:meth:`observe_stream`, whose events carry their seq directly: no id parsing).

    Bounded: at most ``max_streams`` running streams (the least recently updated is dropped
    first: it would only be rebuilt from its log at its end) and ``max_finished`` recently
    finished ids (late duplicates of those are ignored).
    """

    def __init__(self, *, max_streams: int = 200_000, max_finished: int = 10_000) -> None:
        self._running: OrderedDict[str, _Running] = OrderedDict()
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._max_streams = max_streams
        self._max_finished = max_finished

    def __len__(self) -> int:
        return len(self._running)

    def observe(self, ev: FirehoseEvent) -> FinishedStream | None:
        """Fold one event (the one-event entry format ``f``)."""
        sid = ev.stream_id
        if sid in self._finished:
            return None
        seq = _seq(ev.entry_id)
        if ev.kind in _CHUNK_KINDS:
            st = self._state(sid, ev.model, ev.accepted_at_us, seq)
            self._chunk(st, seq, ev.emitted_at_us, ev.tokens)
            return None
        if ev.kind not in _TERMINAL_KINDS:
            return None
        return self._terminal(
            sid, ev.model, ev.accepted_at_us, seq, ev.kind, ev.emitted_at_us, ev.tokens,
            ev.payload, ev.error_code, ev.stats,
        )  # fmt: skip

    def observe_stream(self, s: FirehoseStream) -> FinishedStream | None:
        """Fold one stream's events of a batch entry (format ``b``); its end, if among them.

        The state is looked up once for the whole group, not once per event.
        """
        sid = s.stream_id
        if sid in self._finished:
            return None
        st: _Running | None = None
        chunk = self._chunk
        for e in s.events:
            if e.kind in _CHUNK_KINDS:
                if st is None:
                    st = self._state(sid, s.model, s.accepted_at_us, e.seq)
                chunk(st, e.seq, e.emitted_at_us, e.tokens)
            elif e.kind in _TERMINAL_KINDS:
                return self._terminal(
                    sid, s.model, s.accepted_at_us, e.seq, e.kind, e.emitted_at_us, e.tokens,
                    e.payload, e.error_code, e.stats,
                )  # fmt: skip
        return None

    def _state(self, sid: str, model: str, accepted_us: int, seq: int) -> _Running:
        st = self._running.get(sid)
        if st is None:
            st = _Running(model, accepted_us, complete=seq == 1)
            self._running[sid] = st
            if len(self._running) > self._max_streams:
                self._running.popitem(last=False)
        else:
            self._running.move_to_end(sid)
        return st

    @staticmethod
    def _chunk(st: _Running, seq: int, emitted_us: int, tokens: int) -> None:
        if seq <= st.last_seq:
            return  # redelivered
        if st.last_seq and seq != st.last_seq + 1:
            st.complete = False  # a gap: skip the inter-token sample across it
            st.prev_us = None
        st.last_seq = seq
        if tokens <= 0:
            return
        if st.prev_us is not None:
            st.itl.add((emitted_us - st.prev_us) / 1e6)
        elif st.first_us is None and st.complete:  # every entry since seq 1 seen
            st.first_us = emitted_us
        st.prev_us = st.last_us = emitted_us

    def _terminal(
        self,
        sid: str,
        model: str,
        accepted_us: int,
        seq: int,
        kind: str,
        emitted_us: int,
        tokens: int,
        payload: bytes | None,
        error_code: str | None,
        stats: RequestStats | None,
    ) -> FinishedStream:
        st = self._running.pop(sid, None)
        if st is None:
            complete = seq == 1  # a stream that ended before any chunk
            st = _Running(model, accepted_us, complete=complete)
        else:
            complete = st.complete and seq == st.last_seq + 1
        finish_reason, prompt_tokens = _done_details(kind, payload)
        if stats is not None:
            prompt_tokens = stats.prompt_tokens
        return FinishedStream(
            stream_id=sid,
            model=model,
            kind=kind,
            accepted_us=accepted_us,
            terminal_us=emitted_us,
            tokens=tokens,
            first_us=st.first_us,
            last_us=st.last_us,
            itl=st.itl,
            complete=complete,
            error_code=error_code,
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
            stats=stats,
        )

    def mark_finished(self, stream_ids: list[str]) -> None:
        """Remember streams whose samples were committed, so late duplicates are ignored."""
        for sid in stream_ids:
            self._finished[sid] = None
        while len(self._finished) > self._max_finished:
            self._finished.popitem(last=False)

    def forget_finished(self) -> None:
        """Drop the memory of committed streams (after a Redis failure).

        That memory only saves work: the markers in Redis decide what is counted. But a
        failover can lose writes a master acknowledged (replication is asynchronous,
        https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/
        #write-safety), markers and counts together; the entries then come back (reclaimed, or
        delivered again) and must be counted again, not ignored as late duplicates.
        """
        self._finished.clear()


def _seq(entry_id: str) -> int:
    """The sequence number of a one-event entry's id (format ``f``), 0 when malformed."""
    try:
        return max(0, entry_seq(entry_id.encode()))
    except (ValueError, UnicodeEncodeError):
        return 0


def _done_details(kind: str, payload: bytes | None) -> tuple[str | None, int]:
    """finish_reason and prompt_tokens from a ``d`` event's payload (a DonePayload), if any."""
    if kind != _DONE or payload is None:
        return None, 0
    with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
        done = decode_done(payload)
        return done.finish_reason, done.prompt_tokens
    return None, 0


def carries_tokens(entry: Entry) -> bool:
    """Whether a log entry stands for output tokens, told from its payload (log entries carry no
    token count; the firehose's do): a whole response (``r``) does; a Responses event does when
    it is a ``*.delta``; a chat or completion chunk does when a choice's delta has more than its
    role, or its text is not empty. A payload of another shape counts as tokens."""
    if not entry.is_data:
        return False
    if entry.kind == Kind.RESPONSE:
        return True
    try:
        obj = msgspec.json.decode(entry.data)
    except msgspec.DecodeError:
        return True
    if not isinstance(obj, dict):
        return True
    kind = obj.get("type")
    if isinstance(kind, str) and kind.startswith("response."):
        return kind.endswith(".delta")
    choices = obj.get("choices")
    if not isinstance(choices, list):
        return True
    for c in choices:
        if not isinstance(c, dict):
            continue
        delta = c.get("delta")
        if isinstance(delta, dict) and any(v for k, v in delta.items() if k != "role"):
            return True
        if c.get("text"):
            return True
    return False


def rebuild(f: FinishedStream, log: Iterable[Entry]) -> FinishedStream:
    """``f`` recomputed from its log's entries: the append time of each entry with tokens
    (:func:`carries_tokens`).

    A log without such entries (expired, or a stream that ended before its first token) leaves
    ``f`` as it is: partial samples beat none.
    """
    token_times_us = [(e.seq, e.t_us) for e in log if e.t_us and carries_tokens(e)]
    if not token_times_us:
        return f
    times = [t for _, t in sorted(token_times_us)]
    itl = LogSketch.of((b - a) / 1e6 for a, b in itertools.pairwise(times))
    return replace(f, first_us=times[0], last_us=times[-1], itl=itl, complete=True)


def fold_finished(fold: Fold, f: FinishedStream) -> None:
    """Add one finished stream's samples and counter increments to ``fold``.

    Every sample goes in the bucket of the terminal entry, so a stream lands in one bucket.
    The exact per-request histograms (:mod:`fakeai.timeseries.histograms`) get one value
    each; those that need the terminal event's :class:`RequestStats` (times from generation
    start, ``n``, ``max_tokens``) get none from entries written before it existed.
    """
    _fold_request(fold, f)
    at = f.terminal_us / 1e6
    m = f.model
    if f.first_us is not None:
        fold.add(n.TTFT, m, (f.first_us - f.accepted_us) / 1e6, at)
        fold.add_sketch(n.ITL, m, f.itl, at)
        gen_s = (f.terminal_us - f.first_us) / 1e6
        if f.tokens > 0 and gen_s > 0:
            fold.add(n.TOKENS_PER_S, m, f.tokens / gen_s, at)
        if f.tokens > 1 and f.last_us is not None and f.last_us > f.first_us:
            fold.add(n.TPOT, m, (f.last_us - f.first_us) / 1e6 / (f.tokens - 1), at)
    fold.add(n.E2E, m, (f.terminal_us - f.accepted_us) / 1e6, at)
    fold.incr(n.REQUESTS, m)
    if f.tokens:
        fold.incr(n.OUTPUT_TOKENS, m, f.tokens)
    if f.prompt_tokens:
        fold.incr(n.PROMPT_TOKENS, m, f.prompt_tokens)
    if f.kind == _DONE:
        fold.incr(n.SUCCESS, m, label=f.finish_reason or "stop")
    else:
        code = f.error_code or "unknown"
        fold.incr(n.ERRORS, m, label=code)
        if code == "cancelled":
            fold.incr(n.CANCELS, m)
            # vLLM counts aborted requests as finished_reason="abort".
            fold.incr(n.SUCCESS, m, label="abort")


def _fold_request(fold: Fold, f: FinishedStream) -> None:
    """The stream's values of the exact per-request histograms (vLLM's request histograms)."""
    m = f.model
    observe(fold, n.REQ_PROMPT_TOKENS, m, f.prompt_tokens)
    observe(fold, n.REQ_GENERATION_TOKENS, m, f.tokens)
    stats = f.stats
    if stats is None:
        return
    observe(fold, n.REQ_PARAMS_N, m, stats.n)
    if stats.max_tokens is not None:
        observe(fold, n.REQ_PARAMS_MAX_TOKENS, m, stats.max_tokens)
    start = stats.started_at_us
    if not start:
        return  # never generated: no queue, prefill or decode time
    observe(fold, n.REQ_QUEUE_US, m, start - f.accepted_us)
    if f.first_us is not None and f.last_us is not None:
        # A stream taken over after a failover started (again) after its first token: its
        # prefill and inference times are negative, and dropped.
        observe(fold, n.REQ_PREFILL_US, m, f.first_us - start)
        observe(fold, n.REQ_DECODE_US, m, f.last_us - f.first_us)
        observe(fold, n.REQ_INFERENCE_US, m, f.last_us - start)
