"""The dashboard's running-stream rows: counting firehose events (pure)."""

from __future__ import annotations

from fakeai.services.edge.dashboard_feed import apply_entry, sse_event
from fakeai.services.edge.dashboard_live import LiveStreams
from fakeai.streams.log.firehose import F_BATCH, F_EVENT, batch_entry, event, stream_head
from fakeai.wire import FirehoseEvent, encode

SID = "chatcmpl-" + "a" * 35


def _chunk(live: LiveStreams, seq: int, tokens: int = 1) -> None:
    live.apply(SID, "gpt-4o", 1000, seq, "c", tokens)


def test_chunks_add_tokens_and_done_sets_the_total() -> None:
    live = LiveStreams()
    _chunk(live, 1)
    _chunk(live, 2, tokens=2)
    (row,) = live.take()
    assert (row["status"], row["tokens"], row["chunks"]) == ("running", 3, 2)
    assert live.take() == []  # nothing changed since
    live.apply(SID, "gpt-4o", 1000, 3, "d", 5)
    (row,) = live.take()
    assert (row["status"], row["tokens"]) == ("done", 5)
    assert len(live) == 0  # a finished row is reported once, then forgotten


def test_repeated_events_count_once() -> None:
    live = LiveStreams()
    for seq in (1, 2, 2, 1, 3, 3):
        _chunk(live, seq)
    (row,) = live.take()
    assert (row["tokens"], row["chunks"]) == (3, 3)


def test_seeded_rows_skip_what_the_snapshot_counted() -> None:
    live = LiveStreams()
    live.seed(
        [
            {
                "id": SID,
                "model": "gpt-4o",
                "created_ms": 1000,
                "status": "running",
                "tokens": 4,
                "chunks": 4,
                "error_code": None,
            }
        ]
    )
    assert live.take() == []
    for seq in (3, 4, 5):
        _chunk(live, seq)
    (row,) = live.take()
    assert (row["tokens"], row["chunks"]) == (5, 5)


def test_error_keeps_its_code() -> None:
    live = LiveStreams()
    _chunk(live, 1)
    live.apply(SID, "gpt-4o", 1000, 2, "e", 1, "cancelled")
    (row,) = live.take()
    assert (row["status"], row["error_code"]) == ("error", "cancelled")


def test_apply_entry_reads_batches_and_single_events() -> None:
    live = LiveStreams()
    head = stream_head(SID, "gpt-4o", 1_000_000, 1000)
    batch = batch_entry([(head, [event(1, b"c", 1, 1, b"{}"), event(2, b"c", 2, 1, b"{}")])])
    apply_entry(live, [F_BATCH, batch])
    other = "cmpl-" + "b" * 35
    single = FirehoseEvent(
        stream_id=other,
        entry_id="2000-1",
        kind="c",
        model="m",
        accepted_at_us=0,
        emitted_at_us=0,
        tokens=1,
    )
    apply_entry(live, {F_EVENT: encode(single)})
    rows = {r["id"]: r for r in live.take()}
    assert rows[SID]["chunks"] == 2
    assert (rows[other]["created_ms"], rows[other]["tokens"]) == (2000, 1)


def test_sse_event_is_one_named_event() -> None:
    assert sse_event("groups", {"a": 1}) == b'event: groups\ndata: {"a":1}\n\n'
