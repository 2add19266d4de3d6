"""The metrics consumer's per-stream folding (pure): duplicates, gaps, rebuild, counters."""

from __future__ import annotations

import pytest
from tests.integration.metrics.firehose_writer import batch_entry, stream_events

from fakeai.services.metrics.tracker import StreamTracker, carries_tokens, fold_finished, rebuild
from fakeai.streams.log import F_DATA, F_KIND, F_TIME, Entry, Kind, parse_entry
from fakeai.timeseries import Fold
from fakeai.wire import decode_firehose_batch
from fakeai.wire.messages import RequestStats

ACC = 1_700_000_000_000_000


def _events(chunks: list[int], **kw: object) -> list:
    return stream_events("s", "m", accepted_us=ACC, chunk_us=[ACC + c for c in chunks],
                         terminal_us=ACC + chunks[-1] + 1000 if chunks else ACC + 1000, **kw)  # type: ignore[arg-type]  # fmt: skip


def test_complete_stream_yields_every_sample() -> None:
    t = StreamTracker()
    evs = _events([100_000, 120_000, 150_000])
    results = [t.observe(e) for e in evs]
    assert results[:-1] == [None, None, None]
    f = results[-1]
    assert f is not None
    assert f.complete
    assert f.first_us == ACC + 100_000
    assert f.itl.n == 2
    assert f.itl.total == pytest.approx(0.05)
    fold = Fold()
    fold_finished(fold, f)
    n = {k[0]: s.n for k, s in fold.samples.items()}
    assert n == {"ttft": 1, "itl": 2, "e2e": 1, "tokens_per_s": 1, "tpot": 1}
    assert fold.counters == {
        "m": {
            "requests|": 1, "output_tokens|": 3, "success|stop": 1,
            # one observation of the exact per-request histograms; the rest need the stats
            "req_prompt_tokens|1.0": 1, "req_generation_tokens|5.0": 1,
            "req_generation_tokens|sum": 3,
        }
    }  # fmt: skip


def test_duplicates_are_ignored_and_gaps_mark_incomplete() -> None:
    t = StreamTracker()
    e = _events([10, 20, 30, 40])
    for ev in (e[0], e[1], e[1], e[0], e[3]):  # chunk 3 missing
        assert t.observe(ev) is None
    f = t.observe(e[4])
    assert f is not None
    assert not f.complete
    assert f.itl.n == 1  # 1->2 only; the 2->4 gap is skipped
    log = [_entry(seq, Kind.CHUNK, ACC + 10 * seq, _TEXT) for seq in (4, 1, 3, 2)]
    log.append(_entry(5, Kind.DONE, ACC + 50))  # not a data entry: no sample
    fixed = rebuild(f, log)
    assert fixed.complete
    assert fixed.itl.n == 3
    assert fixed.itl.total == pytest.approx(30e-6)
    assert (fixed.first_us, fixed.last_us) == (ACC + 10, ACC + 40)
    assert rebuild(f, []) is f
    assert rebuild(f, [_entry(5, Kind.DONE, ACC + 50)]) is f


_TEXT = b'{"choices":[{"index":0,"delta":{"content":"hi"}}]}'


def _entry(seq: int, kind: bytes, t_us: int, data: bytes = b"{}") -> Entry:
    """A log entry as the consumer reads it back (through the log's one parser)."""
    return parse_entry(b"%d-%d" % (ACC // 1000, seq), {F_KIND: kind, F_DATA: data,
                                                      F_TIME: b"%d" % t_us})  # fmt: skip


def test_stream_first_seen_mid_way_is_incomplete() -> None:
    t = StreamTracker()
    e = _events([10, 20, 30])
    t.observe(e[2])
    f = t.observe(e[3])
    assert f is not None
    assert not f.complete
    assert f.first_us is None


def test_error_before_any_chunk_is_complete() -> None:
    f = StreamTracker().observe(_events([], kind="e", error_code="cancelled")[0])
    assert f is not None
    assert f.complete
    fold = Fold()
    fold_finished(fold, f)
    assert {k[0] for k in fold.samples} == {"e2e"}
    assert fold.counters["m"]["cancels|"] == 1


def test_late_entries_of_finished_streams_are_ignored() -> None:
    t = StreamTracker()
    e = _events([10, 20])
    for ev in e:
        t.observe(ev)
    t.mark_finished(["s"])
    assert t.observe(e[0]) is None
    assert t.observe(e[-1]) is None
    assert len(t) == 0


def test_running_streams_are_bounded() -> None:
    t = StreamTracker(max_streams=10)
    for i in range(50):
        t.observe(stream_events(f"s{i}", "m", accepted_us=ACC, chunk_us=[ACC], terminal_us=ACC)[0])
    assert len(t) == 10


def test_batch_groups_fold_like_single_events() -> None:
    """observe_stream over a batch's groups gives what observe gives event by event."""
    evs = _events([100_000, 120_000, 150_000, 190_000])
    one = StreamTracker()
    expected = [f for f in (one.observe(e) for e in evs) if f is not None]
    groups = [g for part in (evs[:2], evs[1:3], evs[3:]) for g in _groups(part)]
    many = StreamTracker()
    got = [f for f in (many.observe_stream(g) for g in groups) if f is not None]
    assert len(got) == len(expected) == 1
    a, b = got[0], expected[0]
    assert (a.first_us, a.last_us, a.tokens, a.complete, a.itl.n, a.finish_reason) == (
        b.first_us, b.last_us, b.tokens, b.complete, b.itl.n, b.finish_reason,
    )  # fmt: skip
    assert a.itl.total == pytest.approx(b.itl.total)
    assert a.finish_reason == "stop"


def _groups(events: list) -> list:
    return decode_firehose_batch(batch_entry(events))


@pytest.mark.parametrize("entry_id", ["1-x", "1", "", "1-\u0663", "1--1"])
def test_malformed_entry_ids_count_as_seq_0(entry_id: str) -> None:
    """A one-event entry (format ``f``) whose id has no ``<seq>`` number: seq 0, a gap."""
    ev = _events([10])[0]
    odd = type(ev)(**{**{f: getattr(ev, f) for f in ev.__struct_fields__}, "entry_id": entry_id})
    t = StreamTracker()
    assert t.observe(odd) is None
    f = t.observe(_events([10])[1])
    assert f is not None
    assert not f.complete


def test_ttft_and_itl_count_entries_with_tokens_only() -> None:
    """A Responses stream: its first entries (created, in_progress, ...) are due at acceptance
    with 0 tokens; TTFT is at the first entry with tokens, ITL between entries with tokens,
    decode ends at the last one (not at the closing events)."""
    evs = _events([0, 0, 0, 200_000, 230_000, 290_000, 290_100], chunk_tokens=[0, 0, 0, 1, 1, 1, 0])
    t = StreamTracker()
    f = [t.observe(e) for e in evs][-1]
    assert f is not None
    assert f.complete
    assert (f.first_us, f.last_us) == (ACC + 200_000, ACC + 290_000)
    assert f.itl.n == 2
    assert f.itl.total == pytest.approx(0.09)
    assert f.tokens == 3
    many = StreamTracker()
    got = [many.observe_stream(g) for g in _groups(evs)][-1]
    assert got is not None
    assert (got.first_us, got.last_us, got.itl.n) == (f.first_us, f.last_us, f.itl.n)


def test_a_gap_before_the_first_token_leaves_ttft_to_the_rebuild() -> None:
    evs = _events([0, 0, 200_000, 230_000], chunk_tokens=[0, 0, 1, 1])
    t = StreamTracker()
    for e in (evs[0], evs[2], evs[3]):  # entry 2 (no tokens) missed
        t.observe(e)
    f = t.observe(evs[4])
    assert f is not None
    assert not f.complete
    assert f.first_us is None
    log = [_entry(1, Kind.CHUNK, ACC, b'{"type":"response.created"}'),
           _entry(2, Kind.CHUNK, ACC + 1, b'{"type":"response.in_progress"}'),
           _entry(3, Kind.CHUNK, ACC + 200_000, b'{"type":"response.output_text.delta"}'),
           _entry(4, Kind.CHUNK, ACC + 230_000, _TEXT)]  # fmt: skip
    fixed = rebuild(f, log)
    assert (fixed.first_us, fixed.last_us, fixed.itl.n) == (ACC + 200_000, ACC + 230_000, 1)


@pytest.mark.parametrize(
    ("kind", "data", "expected"),
    [
        (Kind.CHUNK, _TEXT, True),
        (Kind.CHUNK, b'{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}', False),
        (Kind.CHUNK, b'{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}', False),
        (Kind.CHUNK, b'{"choices":[],"usage":{"prompt_tokens":3}}', False),
        (Kind.CHUNK, b'{"choices":[{"index":0,"text":"hi"}]}', True),
        (Kind.CHUNK, b'{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0}]}}]}', True),
        (Kind.CHUNK, b'{"type":"response.output_text.delta","delta":"hi"}', True),
        (Kind.CHUNK, b'{"type":"response.completed"}', False),
        (Kind.CHUNK, b"not json", True),
        (Kind.CHUNK, b"{}", True),
        (Kind.RESPONSE, b"{}", True),
        (Kind.DONE, b"{}", False),
    ],
)
def test_carries_tokens_tells_from_the_payload(kind: bytes, data: bytes, expected: bool) -> None:
    assert carries_tokens(_entry(1, kind, ACC, data)) is expected


def _counters(fold: Fold, metric: str) -> dict[str, int]:
    prefix = metric + "|"
    return {f[len(prefix) :]: v for f, v in fold.counters["m"].items() if f.startswith(prefix)}


def test_request_stats_fill_the_exact_request_histograms() -> None:
    """Queue = start - accepted, prefill = first token - start, decode = last - first token,
    inference = last token - start; n and max_tokens as the request set them."""
    stats = RequestStats(started_at_us=ACC + 50_000, prompt_tokens=12, n=2, max_tokens=64)
    evs = _events([400_000, 500_000, 900_000], prompt_tokens=12, stats=stats)
    t = StreamTracker()
    f = [t.observe(e) for e in evs][-1]
    assert f is not None
    fold = Fold()
    fold_finished(fold, f)
    assert _counters(fold, "req_queue_us") == {"0.3": 1, "sum": 50_000}
    assert _counters(fold, "req_prefill_us") == {"0.5": 1, "sum": 350_000}
    assert _counters(fold, "req_decode_us") == {"0.5": 1, "sum": 500_000}
    assert _counters(fold, "req_inference_us") == {"1.0": 1, "sum": 850_000}
    assert _counters(fold, "req_prompt_tokens") == {"20.0": 1, "sum": 12}
    assert _counters(fold, "req_generation_tokens") == {"5.0": 1, "sum": 3}
    assert _counters(fold, "req_params_n") == {"2.0": 1, "sum": 2}
    assert _counters(fold, "req_params_max_tokens") == {"100.0": 1, "sum": 64}
    assert fold.counters["m"]["prompt_tokens|"] == 12


def test_a_request_that_never_started_has_no_request_times() -> None:
    stats = RequestStats(started_at_us=0, prompt_tokens=0, n=1, max_tokens=None)
    f = StreamTracker().observe(_events([], kind="e", error_code="invalid_request",
                                        stats=stats)[0])  # fmt: skip
    assert f is not None
    fold = Fold()
    fold_finished(fold, f)
    names = {k.partition("|")[0] for k in fold.counters["m"]}
    assert "req_params_n" in names
    assert not names & {"req_queue_us", "req_prefill_us", "req_params_max_tokens"}


def test_the_stats_prompt_tokens_count_for_cancelled_streams_too() -> None:
    stats = RequestStats(started_at_us=ACC, prompt_tokens=7, n=1, max_tokens=None)
    evs = _events([100], kind="e", error_code="cancelled", tokens=1, stats=stats)
    t = StreamTracker()
    f = [t.observe(e) for e in evs][-1]
    assert f is not None
    fold = Fold()
    fold_finished(fold, f)
    assert fold.counters["m"]["prompt_tokens|"] == 7
    assert _counters(fold, "req_prompt_tokens") == {"10.0": 1, "sum": 7}
