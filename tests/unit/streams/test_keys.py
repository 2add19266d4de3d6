"""Every key comes from Keys; stream keys share a cluster hash tag."""

from __future__ import annotations

import pytest

from fakeai.streams import Keys, partition_for


def _tag(key: str) -> str:
    return key[key.index("{") + 1 : key.index("}")]


def test_stream_keys_share_one_hash_tag() -> None:
    k = Keys("fakeai")
    sid = "chatcmpl-abc"
    assert k.chunks(sid) == "fakeai:{chatcmpl-abc}:chunks"
    assert k.meta(sid) == "fakeai:{chatcmpl-abc}:meta"
    assert _tag(k.chunks(sid)) == _tag(k.meta(sid)) == sid


def test_prefix_applies_everywhere() -> None:
    k = Keys("p1")
    names = [
        k.requests(),
        k.cancels(),
        k.chunks("s"),
        k.meta("s"),
        k.active(),
        k.events(0),
        k.ts_bucket("ttft", "gpt-4o", "1s", 5),
        k.ts_models(),
        k.counters(),
    ]
    assert all(n.startswith("p1:") for n in names)
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("bad", ["", "a b", "x{y", "z}"])
def test_bad_prefix_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Keys(bad)


def test_partition_is_stable_and_in_range() -> None:
    sids = [f"chatcmpl-{i}" for i in range(1000)]
    parts = [partition_for(s, 4) for s in sids]
    assert parts == [partition_for(s, 4) for s in sids]
    assert set(parts) == {0, 1, 2, 3}
