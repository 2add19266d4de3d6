"""The bench's reading of Responses API events and its sequence_number check (pure)."""

from __future__ import annotations

import pytest

from fakeai.services.bench.sse import event_info
from fakeai.services.bench.stats import IdCheck


@pytest.mark.parametrize(
    ("data", "text", "tokens", "error", "sequence", "end"),
    [
        (b'{"type":"response.created","sequence_number":0,"response":{"usage":null}}',
         "", None, False, 0, False),
        (b'{"type":"response.output_text.delta","item_id":"m","delta":"Hi","sequence_number":4}',
         "Hi", None, False, 4, False),
        (b'{"type":"response.function_call_arguments.delta","delta":"{","sequence_number":5}',
         "", None, False, 5, False),
        (b'{"type":"response.completed","response":{"usage":{"output_tokens":7}},'
         b'"sequence_number":9}', "", 7, False, 9, True),
        (b'{"type":"response.incomplete","response":{"usage":{"output_tokens":16}},'
         b'"sequence_number":30}', "", 16, False, 30, True),
        (b'{"type":"error","code":"x","message":"m","param":null}', "", None, True, None, False),
        (b'{"type":"response.failed","response":{},"sequence_number":3}',
         "", None, True, 3, False),
    ],
)  # fmt: skip
def test_event_info(
    data: bytes, text: str, tokens: int | None, error: bool, sequence: int | None, end: bool
) -> None:
    info = event_info(data)
    assert info.valid
    assert (info.text, info.completion_tokens, info.error, info.sequence, info.end) == (
        text,
        tokens,
        error,
        sequence,
        end,
    )


def test_event_info_of_a_malformed_event_is_invalid() -> None:
    assert not event_info(b'{"type":"response.output_text.delta","delta":"').valid


@pytest.mark.parametrize(
    ("numbers", "gaps", "duplicates"),
    [
        ([0, 1, 2, 3], 0, 0),
        ([1, 2], 1, 0),  # event 0 never arrived
        ([0, 1, 3, 4], 1, 0),
        ([0, 1, 1, 2], 0, 1),
        ([0, 2, 1], 1, 1),
    ],
)
def test_sequence_numbers_are_checked_for_gaps_and_repeats(
    numbers: list[int], gaps: int, duplicates: int
) -> None:
    check = IdCheck()
    for n in numbers:
        check.see_sequence(n)
    assert (check.gaps, check.duplicates) == (gaps, duplicates)
