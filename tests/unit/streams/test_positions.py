"""Stream ids and the resume decision (pure; table-driven)."""

from __future__ import annotations

import pytest

from fakeai.streams import (
    EntryId,
    ResumeVerdict,
    created_ms_of,
    decide_resume,
    new_stream_id,
    parse_entry_id,
)

CREATED = 1_700_000_000_123


def test_stream_id_embeds_creation_time_and_96_random_bits() -> None:
    sid = new_stream_id("chat", CREATED)
    assert sid.startswith("chatcmpl-")
    assert created_ms_of(sid) == CREATED
    assert len(sid.removeprefix("chatcmpl-")) == 11 + 24  # 24 hex digits = 96 bits
    assert new_stream_id("chat", CREATED) != sid
    assert new_stream_id("completion", CREATED).startswith("cmpl-")


@pytest.mark.parametrize(
    "sid", ["", "chatcmpl-xyz", "foo-18bcfe56800b12703fc78518ab2ad3b3003", "chatcmpl-../../etc"]
)
def test_foreign_stream_ids_have_no_creation_time(sid: str) -> None:
    assert created_ms_of(sid) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1-2", EntryId(1, 2)),
        (b"1700000000123-0", EntryId(CREATED, 0)),
        (" 5-6 ", EntryId(5, 6)),
        ("5", None),
        ("a-b", None),
        ("-1-2", None),
        ("1-2-3", None),
        ("", None),
    ],
)
def test_parse_entry_id(raw: str | bytes, expected: EntryId | None) -> None:
    assert parse_entry_id(raw) == expected


@pytest.mark.parametrize(
    ("last_id", "exists", "last_seq", "finished", "verdict", "pos"),
    [
        (None, True, None, False, ResumeVerdict.OK, EntryId(CREATED, 0)),
        ("", True, 5, True, ResumeVerdict.OK, EntryId(CREATED, 0)),
        (f"{CREATED}-3", True, 10, False, ResumeVerdict.OK, EntryId(CREATED, 3)),
        (f"{CREATED}-10", True, 10, True, ResumeVerdict.OK, EntryId(CREATED, 10)),
        # live stream: a client may hold an id the reader has not seen yet
        (f"{CREATED}-12", True, 10, False, ResumeVerdict.OK, EntryId(CREATED, 12)),
        (f"{CREATED}-11", True, 10, True, ResumeVerdict.BEYOND, EntryId(CREATED, 0)),
        ("garbage", True, 10, False, ResumeVerdict.MALFORMED, EntryId(CREATED, 0)),
        ("1700000000999-3", True, 10, False, ResumeVerdict.FOREIGN, EntryId(CREATED, 0)),
        (f"{CREATED}-3", False, None, False, ResumeVerdict.EXPIRED, EntryId(CREATED, 0)),
    ],
)
def test_decide_resume(
    last_id: str | None,
    exists: bool,
    last_seq: int | None,
    finished: bool,
    verdict: ResumeVerdict,
    pos: EntryId,
) -> None:
    got = decide_resume(
        last_id, created_ms=CREATED, exists=exists, last_seq=last_seq, finished=finished
    )
    assert got == (verdict, pos)
