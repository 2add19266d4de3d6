"""Fault injection: header and setting parsing (tables), the seeded draw, the pre-stream
errors, and the mid-stream wrapper over a log iterator."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator

import pytest

from fakeai.errors import ApiError, BadRequest
from fakeai.services.edge.faults import (
    FAULT_CODE,
    CutAfter,
    ErrorAfter,
    Fault,
    FaultDice,
    FaultRates,
    MalformedAfter,
    MidStreamFault,
    StallAfter,
    StatusFault,
    choose_fault,
    inject,
    parse_fault,
    parse_fault_rates,
    status_error,
)
from fakeai.services.edge.formats import Formatter
from fakeai.services.edge.interrupted import StreamInterrupted
from fakeai.streams.log import Entry, Kind

MAX_STALL = 60.0


@pytest.mark.parametrize(
    ("raw", "fault"),
    [
        ("status=429", StatusFault(429)),
        ("status=500", StatusFault(500)),
        (" status=503 ", StatusFault(503)),
        ("error_after=0", ErrorAfter(0)),
        ("error_after=12", ErrorAfter(12)),
        ("stall=2@5", StallAfter(2.0, 5)),
        ("stall=0.25@0", StallAfter(0.25, 0)),
        ("stall=1.5", StallAfter(1.5, 0)),
        ("stall=60@1", StallAfter(60.0, 1)),
        ("cut_after=3", CutAfter(3)),
        ("malformed_after=4", MalformedAfter(4)),
        ("Cut_After = 3", CutAfter(3)),
        ("none", None),
        ("NONE", None),
    ],
)
def test_parse_fault(raw: str, fault: Fault | None) -> None:
    assert parse_fault(raw, max_stall_s=MAX_STALL) == fault


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("", "expected one of"),
        ("status=404", "status must be 429, 500 or 503"),
        ("status=5030", "expected one of"),
        ("status", "expected one of"),
        ("error_after=-1", "expected one of"),
        ("error_after=1e3", "expected one of"),
        ("error_after=1234567890", "expected one of"),
        ("stall=0@1", "stall seconds must be > 0"),
        ("stall=61@1", "at most 60"),
        ("stall=nan@1", "expected one of"),
        ("stall=inf", "expected one of"),
        ("stall=2@", "expected one of"),
        ("cut_after=3,status=500", "expected one of"),
        ("explode=1", "expected one of"),
    ],
)
def test_a_malformed_fault_header_is_a_400_naming_it(raw: str, words: str) -> None:
    with pytest.raises(BadRequest) as e:
        parse_fault(raw, max_stall_s=MAX_STALL)
    assert e.value.status == 400
    assert e.value.param == "X-FakeAI-Fault"
    assert e.value.code == "invalid_fault"
    assert words in e.value.message
    assert "X-FakeAI-Fault" in e.value.message


def test_parse_fault_rates() -> None:
    rates = parse_fault_rates(
        " seed=7; 2% status=503; 0.01 stall=2@10 ;; 0.5% cut_after=3", max_stall_s=MAX_STALL
    )
    assert rates.seed == 7
    assert rates.rules == (
        (0.02, StatusFault(503)),
        (0.01, StallAfter(2.0, 10)),
        (0.005, CutAfter(3)),
    )
    assert parse_fault_rates(None, max_stall_s=MAX_STALL) == FaultRates()
    assert parse_fault_rates("  ", max_stall_s=MAX_STALL) == FaultRates()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("seed=x", "item 1 ('seed=x'): seed must be an integer"),
        ("status=503", "item 1 ('status=503'): expected '<probability> <fault>'"),
        ("0.5 status=404", "item 1 ('0.5 status=404'): status must be"),
        ("1.5 status=503", "expected '<probability> <fault>'"),
        ("150% status=503", "expected '<probability> <fault>'"),
        ("0.1 none", "'none' has no place"),
        ("0.6 status=503; 0.6 status=500", "add up to 1.2, more than 1"),
    ],
)
def test_malformed_fault_rates_name_the_item(text: str, words: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_fault_rates(text, max_stall_s=MAX_STALL)
    assert words in str(e.value)
    assert "FAKEAI_FAULTS" in str(e.value)


def test_the_draw_is_seeded_and_follows_the_rates() -> None:
    rates = parse_fault_rates("seed=3; 10% status=503; 30% cut_after=2", max_stall_s=MAX_STALL)
    a, b = FaultDice(rates), FaultDice(rates)
    draws = [a.draw() for _ in range(10_000)]
    assert draws == [b.draw() for _ in range(10_000)]  # the same seed, the same faults
    assert 900 <= draws.count(StatusFault(503)) <= 1100
    assert 2800 <= draws.count(CutAfter(2)) <= 3200
    assert FaultDice(FaultRates()).draw() is None


def test_choose_fault() -> None:
    always = FaultDice(parse_fault_rates("100% error_after=1", max_stall_s=MAX_STALL))
    kw = {"max_stall_s": MAX_STALL}
    assert choose_fault(None, always, streaming=True, **kw) == ErrorAfter(1)
    assert choose_fault("", always, streaming=True, **kw) == ErrorAfter(1)
    assert choose_fault("cut_after=2", always, streaming=True, **kw) == CutAfter(2)  # header wins
    assert choose_fault("none", always, streaming=True, **kw) is None  # and can say none
    assert choose_fault(None, None, streaming=True, **kw) is None
    # A drawn mid-stream fault does not apply to a whole response; a status does.
    assert choose_fault(None, always, streaming=False, **kw) is None
    assert choose_fault("status=500", None, streaming=False, **kw) == StatusFault(500)
    with pytest.raises(BadRequest, match="needs a streaming response"):
        choose_fault("stall=1@1", None, streaming=False, **kw)


def _body(e: ApiError) -> dict[str, object]:
    err: dict[str, object] = e.body()["error"]
    return err


def test_status_faults_answer_with_openais_bodies_and_headers() -> None:
    e429 = status_error(StatusFault(429))
    assert e429.status == 429
    assert _body(e429)["type"] == "requests"
    assert _body(e429)["code"] == "rate_limit_exceeded"
    h = e429.headers()
    assert h["Retry-After"] == "1"
    assert h["retry-after-ms"] == "1000"
    assert h["x-ratelimit-limit-requests"] == "60"
    assert h["x-ratelimit-remaining-requests"] == "0"
    assert h["x-ratelimit-reset-requests"] == "1s"
    # With the key's own limit headers: those, with nothing remaining.
    own = {
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-requests": "42",
        "x-ratelimit-reset-requests": "17.28s",
    }
    h = status_error(StatusFault(429), own).headers()
    assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("100", "0")
    assert "17.28s" in _body(status_error(StatusFault(429), own))["message"]  # type: ignore[operator]

    e500 = status_error(StatusFault(500))
    assert e500.status == 500
    assert _body(e500) == {
        "message": _body(e500)["message"],
        "type": "server_error",
        "param": None,
        "code": None,
    }
    assert e500.headers() == {}
    e503 = status_error(StatusFault(503))
    assert e503.status == 503
    assert (_body(e503)["type"], _body(e503)["code"]) == ("server_error", None)
    assert e503.headers() == {"Retry-After": "1"}


# -- mid-stream ---------------------------------------------------------------------------------

MS = 1_700_000_000_000


def _chunk(seq: int) -> Entry:
    return Entry(f"{MS}-{seq}".encode(), seq, Kind.CHUNK, b'{"n":%d}' % seq, 1)


def _done(seq: int) -> Entry:
    return Entry(f"{MS}-{seq}".encode(), seq, Kind.DONE, b"{}", 1)


class Log:
    """A fake log iterator: yields the given batches; records that it was closed."""

    def __init__(self, *batches: list[Entry]) -> None:
        self.batches = batches
        self.closed = False
        self.pulled = 0

    async def entries(self) -> AsyncGenerator[list[Entry], None]:
        try:
            for b in self.batches:
                self.pulled += 1
                yield b
        finally:
            self.closed = True


# Five chunks and the end, in batches of 2, [] (a heartbeat), 3 and 1.
BATCHES = ([_chunk(1), _chunk(2)], [], [_chunk(3), _chunk(4), _chunk(5)], [_done(6)])


async def _run(
    fault: MidStreamFault | None, log: Log | None = None
) -> tuple[list[list[bytes]], StreamInterrupted | None, Log]:
    """Drain the wrapper: the ids of each batch it yields, and the interruption if any."""
    log = log or Log(*BATCHES)
    out: list[list[bytes]] = []
    stopped: StreamInterrupted | None = None
    gen = inject(log.entries(), fault)
    try:
        async for batch in gen:
            # A chunk's seq; the malformed chunk's whole id.
            out.append([e.id if b"malformed" in e.data else str(e.seq).encode() for e in batch])
    except StreamInterrupted as e:
        stopped = e
    finally:
        await gen.aclose()
    return out, stopped, log


async def test_no_fault_passes_everything() -> None:
    out, stopped, log = await _run(None)
    assert out == [[b"1", b"2"], [], [b"3", b"4", b"5"], [b"6"]]
    assert stopped is None
    assert log.closed


@pytest.mark.parametrize(
    ("n", "before"),
    [
        (0, []),
        (1, [[b"1"]]),
        (2, [[b"1", b"2"]]),
        (4, [[b"1", b"2"], [], [b"3", b"4"]]),
        (5, [[b"1", b"2"], [], [b"3", b"4", b"5"]]),
    ],
)
async def test_error_after_n_chunks(n: int, before: list[list[bytes]]) -> None:
    """Exactly N chunks, then an error event (the response writes it, then [DONE])."""
    out, stopped, log = await _run(ErrorAfter(n))
    assert out == before
    assert stopped is not None
    assert stopped.code == FAULT_CODE
    assert "Last-Event-ID" in stopped.message
    assert log.closed


async def test_a_fault_past_the_end_never_fires() -> None:
    for fault in (ErrorAfter(6), CutAfter(6), MalformedAfter(6), StallAfter(3600, 6)):
        out, stopped, log = await _run(fault)
        assert out == [[b"1", b"2"], [], [b"3", b"4", b"5"], [b"6"]]
        assert stopped is None
        assert log.closed


async def test_cut_after_n_chunks_ends_without_the_end_entry() -> None:
    out, stopped, log = await _run(CutAfter(3))
    assert out == [[b"1", b"2"], [], [b"3"]]
    assert stopped is None
    assert log.closed
    assert log.pulled == 3  # nothing read after the cut


async def test_malformed_after_n_chunks_keeps_the_last_event_id() -> None:
    """One malformed chunk after N, carrying the id of chunk N, then the stream goes on."""
    out, stopped, _ = await _run(MalformedAfter(3))
    prev = f"{MS}-3".encode()
    assert out == [[b"1", b"2"], [], [b"3"], [prev, b"4", b"5"], [b"6"]]
    assert stopped is None
    out, _, _ = await _run(MalformedAfter(2))  # at a batch's end: before the next entry
    assert out == [[b"1", b"2"], [], [f"{MS}-2".encode(), b"3", b"4", b"5"], [b"6"]]
    out, _, _ = await _run(MalformedAfter(0))  # before the first chunk: the start position
    assert out[0] == [f"{MS}-0".encode(), b"1", b"2"]


async def test_a_malformed_chunk_is_invalid_json_on_the_wire() -> None:
    log = Log([_chunk(1)], [_chunk(2)], [_done(3)])
    batches = [b async for b in inject(log.entries(), MalformedAfter(1))]
    bad = batches[1][0]
    sse = Formatter("sse", 3000).entry(bad)
    assert sse.startswith(f"id: {MS}-1\ndata: ".encode())
    with pytest.raises(json.JSONDecodeError):
        json.loads(sse.split(b"data: ", 1)[1])
    line = Formatter("jsonl", 3000).entry(bad)
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


async def test_stall_after_n_chunks_reads_nothing_meanwhile() -> None:
    closing = asyncio.Event()
    log = Log(*BATCHES)
    gen = inject(log.entries(), StallAfter(3600, 2), closing=closing)
    assert [e.seq for e in await anext(gen)] == [1, 2]
    pulled = log.pulled
    nxt = asyncio.ensure_future(anext(gen))
    await asyncio.sleep(0.05)
    assert not nxt.done()  # an hour's stall
    assert log.pulled == pulled  # no heartbeat either: nothing is read during a stall
    closing.set()  # (shutdown ends it early; a deadline against a hang only)
    assert await asyncio.wait_for(nxt, 30) == []  # then the stream goes on
    assert [[e.seq for e in b] async for b in gen] == [[3, 4, 5], [6]]


async def test_a_stall_lasts_its_seconds() -> None:
    log = Log(*BATCHES)
    gen = inject(log.entries(), StallAfter(0.2, 0))
    t0 = time.monotonic()
    first = await anext(gen)
    assert time.monotonic() - t0 >= 0.2
    assert [e.seq for e in first] == [1, 2]
    await gen.aclose()


async def test_shutdown_ends_a_stall() -> None:
    closing = asyncio.Event()
    closing.set()
    log = Log(*BATCHES)
    gen = inject(log.entries(), StallAfter(3600, 0), closing=closing)
    # A deadline against a hang only: the stall of an hour must end at once.
    assert [e.seq for e in await asyncio.wait_for(anext(gen), 30)] == [1, 2]
    await gen.aclose()
    assert log.closed


async def test_closing_the_wrapper_closes_the_log_iterator() -> None:
    log = Log(*BATCHES)
    gen = inject(log.entries(), CutAfter(5))
    await anext(gen)
    await gen.aclose()
    assert log.closed
