"""Resume at every position, in particular one chunk behind the newest entry (pure).

The edge's resume is two pure decisions: :func:`fakeai.streams.decide_resume` (may the client
resume after this id, and from where) and the reader's gate ``_after`` (which entries of a
batch are new: consecutive seqs after the client's, up to the terminal entry). Together with
what ``XRANGE (<position> +`` returns they must deliver every later entry exactly once; the
hub's first batch may repeat the newest entry the catch-up page already had (the seam).
"""

from __future__ import annotations

import pytest

from fakeai.services.edge.reader import _after
from fakeai.streams import EntryId, ResumeVerdict, decide_resume
from fakeai.streams.log import Entry, Kind

CREATED = 1_700_000_000_123
N = 6
"""Chunks in the log; a finished log also has the terminal entry, seq N + 1."""


def _log(finished: bool) -> list[Entry]:
    entries = [Entry(f"{CREATED}-{s}".encode(), s, Kind.CHUNK, b"{}", 0) for s in range(1, N + 1)]
    if finished:
        entries.append(Entry(f"{CREATED}-{N + 1}".encode(), N + 1, Kind.DONE, b"{}", 0))
    return entries


def _resume(log: list[Entry], position: int, *, finished: bool) -> list[int]:
    """Seqs a client at ``position`` gets: the decision, the XRANGE page after the position,
    then (live) the hub's first batch, which starts at the newest entry of the snapshot."""
    newest = log[-1].seq
    verdict, pos = decide_resume(
        f"{CREATED}-{position}", created_ms=CREATED, exists=True, last_seq=newest,
        finished=finished,
    )  # fmt: skip
    assert verdict is ResumeVerdict.OK
    assert pos == EntryId(CREATED, position)
    page = [e for e in log if e.seq > pos.seq]
    got, last, ended = _after(page, pos.seq)
    seqs = [e.seq for e in got]
    if not finished:
        assert not ended
        terminal = Entry(f"{CREATED}-{newest + 1}".encode(), newest + 1, Kind.DONE, b"{}", 0)
        seam = [log[-1], terminal]  # the hub's batch repeats the snapshot's newest entry
        more, _, ended = _after(seam, last)
        seqs += [e.seq for e in more]
    assert ended
    return seqs


@pytest.mark.parametrize("finished", [True, False], ids=["finished", "live"])
@pytest.mark.parametrize("behind", [0, 1, 2, N])
def test_resume_delivers_every_later_entry_once(finished: bool, behind: int) -> None:
    """``behind`` entries behind the newest chunk (1: one chunk behind)."""
    log = _log(finished)
    position = N - behind
    assert _resume(log, position, finished=finished) == list(range(position + 1, N + 2))


def test_one_chunk_behind_on_the_seam_alone() -> None:
    """The hub delivers the newest entry again, alone (the single-entry path) and with the
    next: only the next one is new."""
    log = _log(False)
    assert _after([log[-1]], N) == ([], N, False)
    got, last, ended = _after([log[-2], log[-1]], N - 1)
    assert ([e.seq for e in got], last, ended) == ([N], N, False)


@pytest.mark.parametrize(
    ("position", "verdict"),
    [
        (N, ResumeVerdict.OK),  # one behind the terminal entry: gets [DONE] alone
        (N + 1, ResumeVerdict.OK),  # the terminal entry itself: nothing left, a clean end
        (N + 2, ResumeVerdict.BEYOND),  # one past the end
    ],
)
def test_the_end_of_a_finished_stream(position: int, verdict: ResumeVerdict) -> None:
    got = decide_resume(
        f"{CREATED}-{position}", created_ms=CREATED, exists=True, last_seq=N + 1, finished=True
    )
    assert got[0] is verdict
    assert got[1] == (EntryId(CREATED, position) if verdict is ResumeVerdict.OK
                      else EntryId(CREATED, 0))  # fmt: skip


def test_the_terminal_entry_itself_ends_quietly() -> None:
    log = _log(True)
    assert _after([log[-1]], N + 1) == ([], N + 1, True)
