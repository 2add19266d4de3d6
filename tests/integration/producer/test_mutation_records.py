"""A stream's records, field by field (pure: commands decoded back from the protocol): the meta
a stream's start and end write, the terminal entry's done and error payloads, retention, the
dead-letter record, and the command count each item declares (the writer reads that many
replies).

Written from the mutation testing of ``fakeai/services/producer/records.py``
(docs/TESTING.md): each case kills a mutant the other tests let live.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import redis.asyncio as aredis
from tests.integration.producer.producerkit import commands, stream_records

from fakeai.services.producer import records as records_module
from fakeai.services.producer.records import (
    DEADLETTER_MAXLEN,
    EndCode,
    Outcome,
    StreamRecords,
    ack,
)
from fakeai.streams import PRODUCERS_GROUP, Keys
from fakeai.streams.log import Kind, Link
from fakeai.streams.meta import F

SID = "chatcmpl-0123456789abcdef01234567"
CREATED_MS = 1_700_000_000_123
T_US = 1_700_000_002_345_678


def _hash(command: list[bytes]) -> dict[bytes, bytes]:
    """The field/value pairs of an ``HSET key f v ...`` command."""
    assert command[0] == b"HSET"
    return dict(zip(command[2::2], command[3::2], strict=True))


@pytest.fixture
def link() -> Link:
    """A link of an unconnected single-server client: slots are all 0, no I/O."""
    return Link(aredis.Redis())


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(records_module, "now_us", lambda: T_US)
    return T_US


def _records(keys: Keys, link: Link, retention_s: int = 60) -> StreamRecords:
    return stream_records(
        keys,
        link,
        sid=SID,
        model="m",
        created_ms=CREATED_MS,
        msg_id=b"1700000000000-7",
        retention_s=retention_s,
    )


def _terminal_payload(packed: bytes) -> tuple[bytes, dict[str, Any]]:
    """The kind and decoded payload of the terminal entry (the first command of the item)."""
    xadd = commands(packed)[0]
    fields = dict(zip(xadd[3::2], xadd[4::2], strict=True))
    return fields[b"k"], msgspec.json.decode(fields[b"d"])


def test_every_item_declares_the_number_of_commands_it_packs(keys: Keys, link: Link) -> None:
    """The writer reads ``n`` replies per item: a wrong ``n`` desynchronises the connection."""
    rec = _records(keys, link)
    final = rec.terminal(3, 2, Outcome(finish_reason="stop"))
    items = [
        rec.started("p1"),
        rec.entry(1, Kind.CHUNK, b"{}", 1),
        rec.entry(2, Kind.CHUNK, b"{}", 1),
        final.cmds,
        final.active,
        final.after,
        rec.ack(),
        rec.parked("boom"),
        ack(link, rec.request_key, b"1-1"),
    ]
    for item in items:
        assert item.n == len(commands(item.packed)), item


async def test_every_item_carries_the_cluster_slot_of_its_keys(keys: Keys) -> None:
    """On a cluster each item goes to the node of its keys' slot (a cluster client computes
    slots without connecting, so no cluster is needed here)."""
    client = aredis.RedisCluster(host="127.0.0.1", port=1)
    try:
        link = Link(client)
        rec = _records(keys, link)
        slot = link.slot(keys.chunks(SID))
        assert [rec.entry(seq, Kind.CHUNK, b"{}", 1).slot for seq in (1, 2, 3)] == [slot] * 3
        assert rec.started("p").slot == slot
        assert rec.parked("boom").slot == link.slot(keys.deadletter())
        assert rec.ack().slot == link.slot(rec.request_key)
    finally:
        await client.aclose()


def test_started_marks_the_stream_running_on_its_producer(
    keys: Keys, link: Link, fixed_clock: int
) -> None:
    (command,) = commands(_records(keys, link).started("producer-7").packed)
    assert command[1] == keys.meta(SID).encode()
    assert _hash(command) == {
        F.STATUS.encode(): b"running",
        F.PRODUCER.encode(): b"producer-7",
        F.STARTED_AT.encode(): repr(fixed_clock / 1e6).encode(),
    }


def test_a_done_stream_writes_its_totals_to_meta_and_its_done_payload(
    keys: Keys, link: Link, fixed_clock: int
) -> None:
    outcome = Outcome(finish_reason="length", completion_tokens=5, prompt_tokens=11)
    final = _records(keys, link).terminal(6, 5, outcome)
    kind, payload = _terminal_payload(final.cmds.packed)
    assert kind == Kind.DONE
    assert payload == {
        "finish_reason": "length",
        "chunks": 5,
        "completion_tokens": 5,
        "prompt_tokens": 11,
    }
    meta = _hash(commands(final.cmds.packed)[1])
    assert meta == {
        F.STATUS.encode(): b"done",
        F.FINISHED_AT.encode(): repr(fixed_clock / 1e6).encode(),
        F.CHUNKS.encode(): b"5",
        F.FINISH_REASON.encode(): b"length",
        F.COMPLETION_TOKENS.encode(): b"5",
        F.PROMPT_TOKENS.encode(): b"11",
    }


def _body(message: str, type_: str, param: str | None, code: str) -> dict[str, Any]:
    return {"message": message, "type": type_, "param": param, "code": code}


@pytest.mark.parametrize(
    ("outcome", "status", "error"),
    [
        (
            Outcome(error_code=EndCode.CANCELLED, error_message="cancelled by the client"),
            b"cancelled",
            _body("cancelled by the client", "invalid_request_error", None, "cancelled"),
        ),
        (
            Outcome(error_code=EndCode.INVALID_REQUEST, error_message="too long", error_param="n"),
            b"error",
            _body("too long", "invalid_request_error", "n", "invalid_request"),
        ),
        (
            Outcome(error_code=EndCode.TIMEOUT),  # no message: the code stands in for it
            b"error",
            _body("timeout", "server_error", None, "timeout"),
        ),
        (
            Outcome(error_code="code_of_a_newer_producer", error_message="x"),
            b"error",
            _body("x", "server_error", None, "code_of_a_newer_producer"),
        ),
    ],
)
def test_an_error_ends_with_its_openai_error_body_and_meta(
    keys: Keys, link: Link, outcome: Outcome, status: bytes, error: dict[str, Any]
) -> None:
    final = _records(keys, link).terminal(2, 1, outcome)
    kind, payload = _terminal_payload(final.cmds.packed)
    assert (kind, payload) == (Kind.ERROR, {"error": error})
    meta = _hash(commands(final.cmds.packed)[1])
    assert meta[F.STATUS.encode()] == status
    assert meta[F.FINISH_REASON.encode()] == b""  # no finish reason: an empty field
    assert meta[F.ERROR_CODE.encode()] == outcome.error_code.encode()  # type: ignore[union-attr]
    assert meta[F.ERROR_MESSAGE.encode()] == outcome.error_message.encode()


@pytest.mark.parametrize(
    ("retention_s", "expected"),
    [(1, [b"EXPIRE", b"1"]), (3600, [b"EXPIRE", b"3600"]), (0, [b"PERSIST"])],
)
def test_retention_expires_log_and_meta_or_keeps_them_forever(
    keys: Keys, link: Link, retention_s: int, expected: list[bytes]
) -> None:
    """Any retention above 0 seconds expires both keys after it; 0 keeps them forever."""
    final = _records(keys, link, retention_s).terminal(1, 0, Outcome())
    tail = commands(final.cmds.packed)[2:]
    chunks, meta = keys.chunks(SID).encode(), keys.meta(SID).encode()
    assert tail == [
        [expected[0], chunks, *expected[1:]],
        [expected[0], meta, *expected[1:]],
    ]


def test_a_parked_request_leaves_its_record_in_the_dead_letter_stream(
    keys: Keys, link: Link
) -> None:
    rec = _records(keys, link)
    (command,) = commands(rec.parked("delivered 3 times").packed)
    assert command == [
        b"XADD",
        keys.deadletter().encode(),
        b"MAXLEN",
        b"~",
        b"%d" % DEADLETTER_MAXLEN,
        b"*",
        b"sid",
        SID.encode(),
        b"partition",
        keys.requests_for(SID, 4).encode(),
        b"id",
        b"1700000000000-7",
        b"reason",
        b"delivered 3 times",
    ]
    assert DEADLETTER_MAXLEN == 10_000


def test_the_request_is_acked_in_the_producers_group(keys: Keys, link: Link) -> None:
    rec = _records(keys, link)
    expected = [[b"XACK", rec.request_key.encode(), PRODUCERS_GROUP.encode(), rec.msg_id]]
    assert commands(rec.ack().packed) == expected
    assert commands(rec.terminal(1, 0, Outcome()).after.packed) == expected
