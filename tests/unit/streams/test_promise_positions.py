"""Stream ids and entry ids at their edges (pure; table-driven): the families a prefix names,
the default family, 64-bit bounds of entry ids, and Realtime event ids.

Written from the mutation testing of ``fakeai/streams/positions.py`` (docs/TESTING.md): each
case kills a mutant the other tests let live.
"""

from __future__ import annotations

import pytest

from fakeai.streams import EntryId, new_stream_id, parse_entry_id
from fakeai.streams.positions import (
    entry_of_event,
    event_id,
    family_of,
    is_event_stream,
    is_response_id,
)

CREATED = 1_700_000_000_123
U64 = (1 << 64) - 1


@pytest.mark.parametrize(
    ("kind", "prefix", "events"),
    [
        ("chat", "chatcmpl-", False),
        ("completion", "cmpl-", False),
        ("responses", "resp_", True),
        ("realtime", "rtresp_", True),
        ("speech", "speech_", True),
        ("transcription", "trsc_", True),
        ("image", "img_", True),
        ("no-such-kind", "cmpl-", False),  # an unknown kind is a completion's
    ],
)
def test_each_family_has_its_prefix(kind: str, prefix: str, events: bool) -> None:
    sid = new_stream_id(kind, CREATED)
    assert sid.startswith(prefix)
    assert family_of(sid) == (kind if kind != "no-such-kind" else "completion")
    assert is_event_stream(sid) is events
    assert is_response_id(sid) is (kind == "responses")


@pytest.mark.parametrize("sid", ["", "foo-123", "CHATCMPL-1", "xresp_1", "resp"])
def test_ids_of_no_family(sid: str) -> None:
    assert family_of(sid) is None
    assert not is_event_stream(sid)
    assert not is_response_id(sid)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (f"{U64}-{U64}", EntryId(U64, U64)),  # the largest id Redis has
        (f"{U64 + 1}-0", None),
        (f"0-{U64 + 1}", None),
        (f"{U64 + 1}-{U64 + 1}", None),
    ],
)
def test_entry_ids_are_two_unsigned_64_bit_integers(raw: str, expected: EntryId | None) -> None:
    assert parse_entry_id(raw) == expected


def test_a_realtime_event_id_names_its_entry() -> None:
    eid = event_id(CREATED, 7)
    assert eid == f"event_{CREATED}-7"
    assert entry_of_event(eid) == f"{CREATED}-7"
    assert entry_of_event(f"{CREATED}-7") == f"{CREATED}-7"  # an entry id already
