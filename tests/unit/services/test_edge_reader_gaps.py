"""A hole in a stream's seqs is reported, never skipped (``_after``, the reader's one gate)."""

from __future__ import annotations

import pytest

from fakeai.services.edge.interrupted import StreamInterrupted
from fakeai.services.edge.reader import _after
from fakeai.streams.log import Entry, Kind


def _e(seq: int, kind: bytes = Kind.CHUNK) -> Entry:
    return Entry(b"1700-%d" % seq, seq, kind, b"{}", 0)


@pytest.mark.parametrize(
    ("seqs", "last", "want", "ended"),
    [
        ([1], 0, [1], False),
        ([1, 2, 3], 0, [1, 2, 3], False),
        ([2, 3], 2, [3], False),  # the seam: 2 was already yielded
        ([1, 2], 5, [], False),  # all old
        ([4], 3, [4], False),
    ],
)
def test_consecutive_entries_pass(seqs: list[int], last: int, want: list[int], ended: bool) -> None:
    batch, new_last, done = _after([_e(s) for s in seqs], last)
    assert [e.seq for e in batch] == want
    assert new_last == (want[-1] if want else last)
    assert done is ended


def test_a_terminal_entry_ends_the_batch() -> None:
    batch, last, ended = _after([_e(1), _e(2, Kind.DONE), _e(3)], 0)
    assert [e.seq for e in batch] == [1, 2]
    assert (last, ended) == (2, True)


@pytest.mark.parametrize(("seqs", "last"), [([3], 1), ([2, 4], 1), ([1, 2, 5], 0)])
def test_a_hole_is_an_error_naming_the_lost_ids(seqs: list[int], last: int) -> None:
    with pytest.raises(StreamInterrupted) as info:
        _after([_e(s) for s in seqs], last)
    assert info.value.code == "entries_lost"
    assert "Last-Event-ID 1700-" in info.value.message
