"""The bench's pure parts: the SSE parser, the chunk decoder, the id checks, percentiles."""

from __future__ import annotations

import math

import pytest

from fakeai.services.bench.sse import SSEEvent, SSEParser, chunk_info
from fakeai.services.bench.stats import IdCheck, percentile, summarize


def test_parser_splits_events_across_arbitrary_reads() -> None:
    raw = (
        b'id: 1-1\ndata: {"a":1}\n\n: ping\n\nid: 1-2\r\ndata: x\r\ndata: y\r\n\r\ndata: [DONE]\n\n'
    )
    for size in (1, 2, 3, 7, len(raw)):
        p = SSEParser()
        events: list[SSEEvent] = []
        for i in range(0, len(raw), size):
            events.extend(p.feed(raw[i : i + size]))
        assert events == [
            SSEEvent(b'{"a":1}', b"1-1"),
            SSEEvent(b"x\ny", b"1-2"),
            SSEEvent(b"[DONE]", None),
        ], size
        assert p.last_event_id == b"1-2"
        assert not p.pending


def test_priming_event_sets_last_event_id_without_dispatch() -> None:
    p = SSEParser()
    assert p.feed(b"id: 5-0\nretry: 1000\n\n") == []
    assert p.last_event_id == b"5-0"


def test_cut_off_event_is_pending() -> None:
    p = SSEParser()
    assert p.feed(b"data: half") == []
    assert p.pending


@pytest.mark.parametrize(
    ("data", "text", "tokens", "error", "valid"),
    [
        (b'{"choices":[{"delta":{"role":"assistant","content":""}}]}', "", None, False, True),
        (b'{"choices":[{"delta":{"content":"hi"}}]}', "hi", None, False, True),
        (b'{"choices":[{"delta":{"reasoning_content":"hm"}}]}', "hm", None, False, True),
        (b'{"choices":[{"text":"yo","index":0}]}', "yo", None, False, True),
        (b'{"choices":[],"usage":{"completion_tokens":7}}', "", 7, False, True),
        (b'{"error":{"message":"m"}}', "", None, True, True),
        (b"not json", "", None, False, False),
    ],
)
def test_chunk_info(data: bytes, text: str, tokens: int | None, error: bool, valid: bool) -> None:
    assert tuple(chunk_info(data)) == (text, tokens, error, valid)


@pytest.mark.parametrize(
    ("ids", "gaps", "duplicates"),
    [
        ([b"9-1", b"9-2", b"9-3"], 0, 0),
        ([b"9-1", b"9-3"], 1, 0),  # 9-2 missing
        ([b"9-2", b"9-3"], 1, 0),  # the first chunk missing
        ([b"9-1", b"9-2", b"9-2", b"9-3"], 0, 1),
        ([b"9-1", b"9-3", b"9-2"], 1, 1),  # out of order counts as a duplicate
        ([b"a", b"b", b"a"], 0, 1),  # foreign ids: repeats only
    ],
)
def test_id_check(ids: list[bytes], gaps: int, duplicates: int) -> None:
    check = IdCheck()
    for i in ids:
        check.see(i)
    assert (check.gaps, check.duplicates) == (gaps, duplicates)


def test_percentiles_interpolate_like_numpy() -> None:
    data = [float(x) for x in range(1, 101)]
    assert percentile(data, 50) == pytest.approx(50.5)
    assert percentile(data, 99) == pytest.approx(99.01)
    assert percentile(data, 100) == 100.0
    assert math.isnan(percentile([], 50))
    s = summarize([0.001, 0.002, 0.003])
    assert (s["count"], s["p50"], s["max"]) == (3, 2.0, 3.0)
    assert summarize([])["p99"] is None
