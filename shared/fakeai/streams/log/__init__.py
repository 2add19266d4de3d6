"""The stream log: the one owner of its entry format, its readers, its writers' packer, and the
raw Redis calls they use.

Contract (every process relies on it; ``tests/contract/test_log_contract.py`` checks it on a
single Redis and on a 3-master cluster):

- A stream's log is ``Keys.chunks(sid)``; its entries (:mod:`.entry`) have ids
  ``<created_ms>-<seq>``: seq 1 is the first chunk, ``<created_ms>-0`` the position before it.
  Ids strictly increase.
- The terminal entry (``d`` done or ``e`` error) is the last entry of a log; nothing is
  appended after it.
- An entry is written with its explicit id, so one sent again (a producer failover, a retried
  write) is rejected by Redis ("equal or smaller than the target stream top item"): no
  duplicates, and :func:`is_duplicate_id` tells that error apart.
- Readers replay from any id: XRANGE ``(<id>`` gives every entry after it, in order.
- The firehose (:mod:`.firehose`) is at-least-once: a batch entry may arrive twice after a
  retried write or a consumer failover; its consumers drop what they have already counted.
- Consumer groups are created with :func:`ensure_group` (BUSYGROUP tolerated, nothing else).
- Raw connection calls live in :mod:`.link` only.
"""

from redis.exceptions import ResponseError

from fakeai.streams.log.entry import (
    F_DATA,
    F_KIND,
    F_TIME,
    TERMINAL_KINDS,
    Entry,
    Kind,
    entry_seq,
    pack_command,
    pack_entry,
    parse_entry,
    parse_flat,
)
from fakeai.streams.log.link import Group, Link, Reader, is_redirect
from fakeai.streams.log.reads import PAGE, ensure_group, iter_entries, last_entry, xrange_pages

__all__ = [
    "F_DATA",
    "F_KIND",
    "F_TIME",
    "PAGE",
    "TERMINAL_KINDS",
    "Entry",
    "Group",
    "Kind",
    "Link",
    "Reader",
    "ensure_group",
    "entry_seq",
    "is_duplicate_id",
    "is_redirect",
    "iter_entries",
    "last_entry",
    "pack_command",
    "pack_entry",
    "parse_entry",
    "parse_flat",
    "xrange_pages",
]


def is_duplicate_id(exc: object) -> bool:
    """The XADD error for an id that is not above the log's last id: a re-sent entry."""
    return isinstance(exc, ResponseError) and "equal or smaller" in str(exc)
