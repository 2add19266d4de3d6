"""The time-series layout at its edges: what one fold writes to a real Redis (every field of
the fine, coarse and total buckets, the min/max zsets that only move outwards, the expiry of
each resolution), folds merged and selected, the default fine bucket, and bucket hashes read
back from a client that decodes replies, with garbled fields first, or counter fields that are
not UTF-8.

Written from the mutation testing of ``fakeai/timeseries/store.py`` (docs/TESTING.md): each
case kills a mutant the other tests let live.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from fakeai.config import Settings
from fakeai.streams import Keys
from fakeai.streams.client import RedisClient
from fakeai.timeseries.sketch import bin_index
from fakeai.timeseries.store import (
    COARSE,
    FINE,
    TOTAL,
    Fold,
    parse_counter_field,
    sketch_from_hash,
)

S2 = Settings(ts_fine_s=2, ts_fine_keep_s=600, ts_coarse_s=60, ts_coarse_keep_s=86_400)


def _minute() -> int:
    """The start of the current minute (Unix s): buckets near now, so EXPIREAT lies ahead."""
    return int(time.time()) // 60 * 60


def _fields(raw: dict[Any, Any]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


async def _write(rc: RedisClient, keys: Keys, fold: Fold, settings: Settings) -> None:
    pipe = rc.pipeline(transaction=False)
    fold.write(pipe, keys, settings)
    await pipe.execute()


@pytest.mark.redis
async def test_a_fold_writes_every_resolution_with_its_fields_extremes_and_expiry(
    rc: RedisClient, keys: Keys
) -> None:
    c = _minute()
    fold = Fold(fine_s=2)
    for value in (0.0, 0.25, 0.5):
        fold.add("ttft", "m", value, at=c + 3.5)  # fine bucket c + 2
    fold.add("ttft", "m", 2.0, at=c + 7.0)  # fine bucket c + 6
    fold.incr("requests", "m", 4)
    await _write(rc, keys, fold, S2)

    fine = keys.ts_bucket("ttft", "m", FINE, c + 2)
    assert _fields(await rc.hgetall(fine)) == {
        "n": "3", "sum": "0.75", "z": "1",
        f"b{bin_index(0.25)}": "1", f"b{bin_index(0.5)}": "1",
    }  # fmt: skip
    coarse = keys.ts_bucket("ttft", "m", COARSE, c)
    got = _fields(await rc.hgetall(coarse))
    assert (got["n"], got["sum"], got["z"]) == ("4", "2.75", "1")
    total = keys.ts_bucket("ttft", "m", TOTAL, 0)
    assert _fields(await rc.hgetall(total))["n"] == "4"

    for resolution, bucket, lo, hi, expire_at in (
        (FINE, c + 2, 0.0, 0.5, c + 2 + 2 + 600),  # the bucket's end + ts_fine_keep_s
        (FINE, c + 6, 2.0, 2.0, c + 6 + 2 + 600),
        (COARSE, c, 0.0, 2.0, c + 60 + 86_400),  # the bucket's end + ts_coarse_keep_s
    ):
        key = keys.ts_bucket("ttft", "m", resolution, bucket)
        mm = keys.ts_minmax("ttft", "m", resolution, bucket)
        assert await rc.zmscore(mm, ["min", "max"]) == [lo, hi]
        assert await rc.execute_command("EXPIRETIME", key) == expire_at
        assert await rc.execute_command("EXPIRETIME", mm) == expire_at
    assert await rc.execute_command("EXPIRETIME", total) == -1  # never expires
    assert not await rc.exists(total + ":mm")  # the all-time series keeps no extremes
    assert await rc.hgetall(keys.counters("m")) == {b"requests|": b"4"}


@pytest.mark.redis
async def test_extremes_only_move_outwards_across_writes(rc: RedisClient, keys: Keys) -> None:
    """A later fold with a higher minimum and a lower maximum changes neither (ZADD LT/GT)."""
    c = _minute()
    first, second = Fold(fine_s=2), Fold(fine_s=2)
    for value in (0.1, 0.9):
        first.add("itl", "m", value, at=c + 1)
    second.add("itl", "m", 0.5, at=c + 1)
    await _write(rc, keys, first, S2)
    await _write(rc, keys, second, S2)
    for resolution, bucket in ((FINE, c), (COARSE, c)):
        mm = keys.ts_minmax("itl", "m", resolution, bucket)
        assert await rc.zmscore(mm, ["min", "max"]) == [0.1, 0.9]
        raw = await rc.hgetall(keys.ts_bucket("itl", "m", resolution, bucket))
        assert raw[b"n"] == b"3"


def test_merge_adds_samples_and_counters_bucket_by_bucket() -> None:
    a, b = Fold(fine_s=2), Fold(fine_s=2)
    a.add("ttft", "m1", 0.25, at=1001.0)
    b.add("ttft", "m1", 0.5, at=1000.5)  # the same bucket (1000)
    b.add("itl", "m2", 0.125, at=1003.0)
    a.incr("requests", "m1", 2)
    b.incr("requests", "m1", 3)
    b.incr("errors", "m2", 1, label="timeout")
    a.merge(b)
    assert {k: (s.n, s.total, s.min, s.max) for k, s in a.samples.items()} == {
        ("ttft", "m1", 1000): (2, 0.75, 0.25, 0.5),
        ("itl", "m2", 1002): (1, 0.125, 0.125, 0.125),
    }
    assert a.counters == {"m1": {"requests|": 5}, "m2": {"errors|timeout": 1}}
    assert b.counters == {"m1": {"requests|": 3}, "m2": {"errors|timeout": 1}}


def test_a_selected_fold_keeps_the_fine_resolution() -> None:
    fold = Fold(fine_s=2)
    fold.add("ttft", "m1", 0.25, at=1001.0)
    fold.add("ttft", "m2", 0.25, at=1001.0)
    part = fold.select({"m1"})
    assert part.models == ["m1"]
    part.add("ttft", "m1", 0.5, at=1003.0)
    assert sorted(b for _, _, b in part.samples) == [1000, 1002]


def test_the_default_fine_bucket_is_one_second() -> None:
    fold = Fold()
    fold.add("ttft", "m", 0.25, at=1001.5)
    assert list(fold.samples) == [("ttft", "m", 1001)]


def test_a_bucket_read_through_a_decoding_client_is_the_same_sketch() -> None:
    """Field names come as str from a client with ``decode_responses``."""
    s = sketch_from_hash({"n": "3", "sum": "0.75", "z": "1", f"b{bin_index(0.25)}": "2"})
    assert (s.n, s.total, s.bins) == (3, 0.75, {None: 1, bin_index(0.25): 2})


def test_a_garbled_field_does_not_hide_the_fields_after_it() -> None:
    s = sketch_from_hash({b"bx": b"1", b"n": b"oops", b"sum": b"1.5", b"z": b"2"})
    assert (s.n, s.total, s.bins) == (0, 1.5, {None: 2})


def test_a_counter_field_that_is_not_utf8_keeps_its_counter() -> None:
    assert parse_counter_field(b"errors|\xff") == ("errors", "\ufffd")
