"""The metrics consumer's tracker at its edges (pure): exact values in seconds, the bounds on
running and finished streams and which entry each drops, batch groups that end a stream,
terminal payloads that are absent or garbled, a stream rebuilt past the last chunk it saw, and
the counters and samples of finished streams with odd token counts or no finish reason.

Written from the mutation testing of ``fakeai/services/metrics/tracker.py``
(docs/TESTING.md): each case kills a mutant the other tests let live.
"""

from __future__ import annotations

import msgspec
import pytest
from tests.integration.metrics.firehose_writer import batch_entry, stream_events
from tests.unit.timeseries.test_promise_metric_values import ACC, finished_stream

from fakeai.services.metrics.tracker import (
    FinishedStream,
    StreamTracker,
    carries_tokens,
    fold_finished,
    rebuild,
)
from fakeai.streams.log import F_DATA, F_KIND, F_TIME, Entry, Kind, parse_entry
from fakeai.timeseries import Fold
from fakeai.timeseries import names as n
from fakeai.wire import decode_firehose_batch
from fakeai.wire.messages import FirehoseEvent, RequestStats

EXACT = 1e-12
"""Relative tolerance of values that must be the µs figure / 1e6 (the default of
``pytest.approx``, 1e-6, would let a divisor of 1000001 pass)."""


def _events(sid: str, chunks: list[int], **kw: object) -> list[FirehoseEvent]:
    end = ACC + (chunks[-1] if chunks else 0) + 250_000
    return stream_events(sid, "m", accepted_us=ACC, chunk_us=[ACC + c for c in chunks],
                         terminal_us=end, **kw)  # type: ignore[arg-type]  # fmt: skip


def _finish(t: StreamTracker, ev: FirehoseEvent) -> FinishedStream:
    f = t.observe(ev)
    assert f is not None
    return f


def _metrics(fold: Fold) -> set[str]:
    return {metric for metric, _, _ in fold.samples}


def _total(fold: Fold, metric: str) -> float:
    return sum(s.total for (m, _, _), s in fold.samples.items() if m == metric)


def _entry(seq: int, t_us: int, data: bytes) -> Entry:
    return parse_entry(b"%d-%d" % (ACC // 1000, seq), {F_KIND: Kind.CHUNK, F_DATA: data,
                                                      F_TIME: b"%d" % t_us})  # fmt: skip


_TEXT = b'{"choices":[{"index":0,"delta":{"content":"hi"}}]}'


def test_every_time_sample_is_the_microsecond_figure_in_seconds() -> None:
    """ttft, itl, tpot, e2e and tokens/s from a stream whose gaps are exact binary fractions."""
    t = StreamTracker()
    f = [t.observe(e) for e in _events("s", [250_000, 500_000, 1_000_000])][-1]
    assert f is not None
    assert f.itl.total == pytest.approx(0.75, rel=EXACT)
    fold = Fold()
    fold_finished(fold, f)
    assert _total(fold, n.TTFT) == pytest.approx(0.25, rel=EXACT)
    assert _total(fold, n.ITL) == pytest.approx(0.75, rel=EXACT)
    assert _total(fold, n.TPOT) == pytest.approx(0.375, rel=EXACT)
    assert _total(fold, n.E2E) == pytest.approx(1.25, rel=EXACT)
    assert _total(fold, n.TOKENS_PER_S) == pytest.approx(3 / 1.0, rel=EXACT)


def test_a_rebuilt_stream_takes_its_first_and_last_token_from_the_log() -> None:
    """The consumer saw chunks 1 and 2 only: the log's chunk 4 is the last token."""
    t = StreamTracker()
    e = _events("s", [250_000, 500_000, 750_000, 1_000_000])
    for ev in (e[0], e[1]):
        t.observe(ev)
    f = _finish(t, e[4])
    assert f.complete is False
    assert f.last_us == ACC + 500_000
    log = [_entry(seq, ACC + 250_000 * seq, _TEXT) for seq in (1, 2, 3, 4)]
    fixed = rebuild(f, log)
    assert (fixed.first_us, fixed.last_us) == (ACC + 250_000, ACC + 1_000_000)
    assert fixed.itl.total == pytest.approx(0.75, rel=EXACT)


def test_a_gap_makes_the_stream_incomplete_as_a_bool() -> None:
    t = StreamTracker()
    e = _events("s", [10, 20, 30])
    t.observe(e[0])
    t.observe(e[2])  # chunk 2 missed
    assert _finish(t, e[3]).complete is False


def test_a_batch_group_ends_a_stream_like_the_one_event_entries() -> None:
    """observe_stream's FinishedStream carries the group's stream id, model, acceptance,
    terminal time, error code and stats, as observe's does."""
    stats = RequestStats(started_at_us=ACC + 1_000, prompt_tokens=4, n=1, max_tokens=8)
    evs = stream_events("s7", "m7", accepted_us=ACC + 5, chunk_us=[ACC + 100_000],
                        terminal_us=ACC + 300_000, kind="e", error_code="timeout",
                        stats=stats)  # fmt: skip
    one = StreamTracker()
    expected = [one.observe(e) for e in evs][-1]
    many = StreamTracker()
    (group,) = decode_firehose_batch(batch_entry(evs))
    got = many.observe_stream(group)
    assert got is not None
    assert expected is not None
    fields = ("stream_id", "model", "kind", "accepted_us", "terminal_us", "tokens", "first_us",
              "last_us", "complete", "error_code", "finish_reason", "prompt_tokens",
              "stats")  # fmt: skip
    assert {k: getattr(got, k) for k in fields} == {k: getattr(expected, k) for k in fields}
    assert (got.stream_id, got.model, got.accepted_us) == ("s7", "m7", ACC + 5)
    assert (got.terminal_us, got.error_code, got.stats) == (ACC + 300_000, "timeout", stats)
    many.mark_finished([got.stream_id])
    assert many.observe_stream(group) is None  # a late copy of the batch is ignored


def test_the_least_recently_updated_running_stream_is_dropped_first() -> None:
    """A dropped stream ends incomplete (it is rebuilt from its log), a kept one complete."""
    t = StreamTracker(max_streams=2)
    a, b, c = (_events(sid, [10, 20]) for sid in "abc")
    t.observe(a[0])
    t.observe(b[0])
    t.observe(a[1])  # a is now the most recently updated
    t.observe(c[0])  # over the bound: b goes
    assert len(t) == 2
    t.observe(c[1])
    assert _finish(t, a[2]).complete is True
    assert _finish(t, c[2]).complete is True
    t.observe(b[1])
    assert _finish(t, b[2]).complete is False


def _late(sid: str) -> FirehoseEvent:
    return _events(sid, [])[0]


def test_finished_streams_are_remembered_up_to_the_bound_oldest_forgotten_first() -> None:
    t = StreamTracker(max_finished=3)
    t.mark_finished(["a", "b", "c"])
    assert [t.observe(_late(sid)) for sid in "abc"] == [None, None, None]
    t.mark_finished(["d"])
    assert t.observe(_late("d")) is None
    assert t.observe(_late("b")) is None
    assert _finish(t, _late("a")).stream_id == "a"  # forgotten: counted again


def test_finished_streams_are_remembered_up_to_10_000_by_default() -> None:
    t = StreamTracker()
    t.mark_finished([f"s{i}" for i in range(10_001)])
    assert t.observe(_late("s1")) is None
    assert t.observe(_late("s10000")) is None
    assert _finish(t, _late("s0")).stream_id == "s0"


def _terminal(kind: str, data: bytes | None, **kw: object) -> FirehoseEvent:
    raw = msgspec.Raw(data) if data is not None else msgspec.Raw(b"null")
    return FirehoseEvent(stream_id="s", entry_id=f"{ACC // 1000}-1", kind=kind, model="m",
                         accepted_at_us=ACC, emitted_at_us=ACC + 1_000, data=raw, **kw)  # type: ignore[arg-type]  # fmt: skip


@pytest.mark.parametrize(
    "data",
    [
        None,  # an older terminal event without its payload
        b"{not json",
        b'{"finish_reason":1,"prompt_tokens":"many"}',  # JSON of another shape
    ],
)
def test_a_done_event_without_a_readable_payload_counts_as_stop(data: bytes | None) -> None:
    f = _finish(StreamTracker(), _terminal("d", data))
    assert (f.finish_reason, f.prompt_tokens) == (None, 0)
    fold = Fold()
    fold_finished(fold, f)
    assert fold.counters["m"]["success|stop"] == 1
    assert "prompt_tokens|" not in fold.counters["m"]


def test_an_error_event_without_stats_has_no_prompt_tokens() -> None:
    f = _finish(StreamTracker(), _terminal("e", b'{"error":{"message":"x","type":"error"}}'))
    assert (f.finish_reason, f.prompt_tokens) == (None, 0)
    fold = Fold()
    fold_finished(fold, f)
    assert fold.counters["m"]["errors|unknown"] == 1  # no error code
    assert "prompt_tokens|" not in fold.counters["m"]


def test_the_finish_reason_labels_the_success_counter() -> None:
    fold = Fold()
    fold_finished(fold, finished_stream(2, [100_000, 200_000], 300_000, finish_reason="length"))
    fold_finished(fold, finished_stream(2, [100_000, 200_000], 300_000))
    assert {k: v for k, v in fold.counters["m"].items() if k.startswith("success|")} == {
        "success|length": 1,
        "success|stop": 1,
    }


@pytest.mark.parametrize(
    ("tokens", "chunks_us", "terminal_us", "expected"),
    [
        # no output tokens: no rate, no tpot
        (0, [100_000, 200_000], 300_000, {n.TTFT, n.ITL, n.E2E}),
        # one token: a rate, but no time per output token (nothing to divide)
        (1, [100_000, 200_000], 300_000, {n.TTFT, n.ITL, n.E2E, n.TOKENS_PER_S}),
        # two tokens: one time per output token
        (2, [100_000, 200_000], 300_000, {n.TTFT, n.ITL, n.E2E, n.TOKENS_PER_S, n.TPOT}),
        # the terminal entry at the first token: no generation time to divide by
        (1, [100_000], 100_000, {n.TTFT, n.E2E}),
    ],
)
def test_token_samples_need_tokens_and_time_to_divide(
    tokens: int, chunks_us: list[int], terminal_us: int, expected: set[str]
) -> None:
    fold = Fold()
    fold_finished(fold, finished_stream(tokens, chunks_us, terminal_us))
    assert _metrics(fold) == expected
    if n.TPOT in expected:
        assert _total(fold, n.TPOT) == pytest.approx(0.1, rel=EXACT)
    if n.TOKENS_PER_S in expected:
        assert _total(fold, n.TOKENS_PER_S) == pytest.approx(tokens / 0.2, rel=EXACT)


def test_an_incomplete_stream_left_as_it_is_folds_without_its_token_times() -> None:
    """First chunk missed and the log expired (``rebuild`` keeps ``f``): no ttft, no prefill
    or decode time (they need the first token), but the queue time and e2e."""
    stats = RequestStats(started_at_us=ACC + 50_000, prompt_tokens=3, n=1, max_tokens=None)
    t = StreamTracker()
    e = _events("s", [100_000, 200_000], stats=stats)
    t.observe(e[1])
    f = rebuild(_finish(t, e[2]), [])
    assert (f.first_us, f.last_us) == (None, ACC + 200_000)
    fold = Fold()
    fold_finished(fold, f)
    assert _metrics(fold) == {n.E2E}
    names = {k.partition("|")[0] for k in fold.counters["m"]}
    assert "req_queue_us" in names
    assert not names & {"req_prefill_us", "req_decode_us", "req_inference_us"}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"[1, 2]", True),  # JSON of another shape counts as tokens
        (b'"text"', True),
        (b'{"choices":[1,{"index":0,"delta":{"content":"hi"}}]}', True),  # odd choice skipped
        (b'{"choices":[1,{"index":0,"delta":{"role":"assistant"}}]}', False),
    ],
)
def test_carries_tokens_looks_past_payloads_of_another_shape(data: bytes, expected: bool) -> None:
    assert carries_tokens(_entry(1, ACC, data)) is expected
