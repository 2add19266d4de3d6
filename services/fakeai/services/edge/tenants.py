"""Tenants: who is calling, and which streams they may see.

A tenant is an API key with a name. The registry is built once from the settings and never
changes while the edge runs:

- ``FAKEAI_API_KEY``: the admin key, tenant :data:`ADMIN_NAME`; the tenant of that name (this
  key, or an entry named ``admin`` in the list or the file) sees every stream;
- ``FAKEAI_API_KEYS``: ``name:key,name:key`` (spaces around items are ignored);
- ``FAKEAI_API_KEYS_FILE``: one ``name:key`` per line; blank lines and ``#`` comments are
  skipped. The key is everything after the first ``:``, so a key may contain ``:``.

A name is 1-64 of ``A-Z a-z 0-9 . _ -`` (it is stored in each stream's meta hash and names the
tenant's rate-limit keys, so no braces, colons or spaces); a key is printable ASCII without
spaces or commas. A malformed line, a name or a key given twice (the admin's included) fails
at construction with a :class:`TenantConfigError` that names the source and line.

With no key configured the server is open: every caller is :data:`ANONYMOUS`, which sees every
stream (as before tenants existed) and owns none.

Ownership (DESIGN.md, "Tenants and limits"): a stream stores the name of the tenant that
created it in its meta hash (:data:`OWNER_FIELD`); only that tenant or the admin lists, reads,
resumes, replays or cancels it. Everyone else gets the answer for a stream that is not there
(404, or 410 past retention, decided from the id alone: :func:`visible`), never a 403: a 403
would confirm that the id exists.

Key look-up compares the SHA-256 of the presented token with that of every configured key with
:func:`hmac.compare_digest` (constant time per candidate, equal lengths, and no early exit), so
response times tell neither how much of a key an attacker has guessed nor its length.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from starlette.types import Scope

from fakeai.config import Settings
from fakeai.streams.meta import F

__all__ = [
    "ADMIN_NAME",
    "ANONYMOUS",
    "NOBODY",
    "OWNER_FIELD",
    "SCOPE_KEY",
    "Tenant",
    "TenantConfigError",
    "Tenants",
    "can_see",
    "owner_of",
    "tenant_of",
    "visible",
]

ADMIN_NAME: Final = "admin"
"""The tenant name of ``FAKEAI_API_KEY``; no other tenant may take it."""

OWNER_FIELD: Final = F.OWNER
"""Meta hash field holding the creating tenant's name (absent on streams of an open server)."""

_OWNER_BYTES: Final = OWNER_FIELD.encode()
_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_KEY_RE = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space
_BEARER = b"bearer "


class TenantConfigError(ValueError):
    """The tenant keys in the settings are malformed; the message names the source and line."""


@dataclass(frozen=True, slots=True)
class Tenant:
    """The caller of a request, as authenticated by its bearer token."""

    name: str
    admin: bool = False

    @property
    def owner(self) -> str | None:
        """What a stream created by this tenant stores in :data:`OWNER_FIELD` (None: nothing,
        on an open server)."""
        return None if self is ANONYMOUS else self.name


ANONYMOUS: Final = Tenant(name="anonymous", admin=True)
"""Every caller of an open server (no keys configured): sees everything, owns nothing."""

NOBODY: Final = Tenant(name="", admin=False)
"""A request nobody authenticated (the middleware did not run): sees no stream. Fail closed."""

SCOPE_KEY: Final = "fakeai.tenant"
"""The ASGI scope key under which the middleware leaves the caller (:func:`tenant_of`)."""


def tenant_of(scope: Scope) -> Tenant:
    """The caller of a request (``request.scope``), as the middleware authenticated it;
    :data:`NOBODY` when it did not."""
    tenant = scope.get(SCOPE_KEY)
    return tenant if isinstance(tenant, Tenant) else NOBODY


def can_see(tenant: Tenant, owner: str | None) -> bool:
    """May ``tenant`` list, read, resume, replay or cancel a stream owned by ``owner``?

    ``owner`` is the stream's :data:`OWNER_FIELD` (None when absent). The admin, and everyone
    on an open server, sees every stream; a tenant sees its own. A stream without an owner
    (created while the server was open, or before tenants existed) is the admin's alone.
    """
    if tenant.admin:
        return True
    return owner is not None and owner == tenant.name


def owner_of(meta: Mapping[Any, Any]) -> str | None:
    """The owner stored in a stream's meta hash (``HGETALL``'s bytes, or str), or None."""
    raw = meta.get(_OWNER_BYTES)
    if raw is None:
        raw = meta.get(OWNER_FIELD)
    if isinstance(raw, bytes):
        raw = raw.decode(errors="replace")
    return raw if isinstance(raw, str) and raw else None


def visible(tenant: Tenant, meta: Mapping[Any, Any]) -> bool:
    """May ``tenant`` see the stream of this meta hash? A route treats a stream it may not
    see exactly as a missing one (the same 404, or 410 past retention): no existence leak.
    Decide it first, before anything else about the stream is said (a 400 for a bad
    Last-Event-ID would already tell that it exists)."""
    return can_see(tenant, owner_of(meta))


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    key: bytes
    source: str
    """Where it was configured, for error messages (``FAKEAI_API_KEYS item 2``, ``file:3``)."""


class Tenants:
    """The frozen registry of API keys (see the module docstring)."""

    __slots__ = ("_candidates", "_names")

    def __init__(self, entries: Iterable[tuple[str, str, str]] = ()) -> None:
        """``entries``: ``(name, key, source)``; ``source`` names where each came from."""
        parsed: list[_Entry] = []
        by_name: dict[str, str] = {}
        by_key: dict[bytes, str] = {}
        for name, key, source in entries:
            if not _NAME_RE.fullmatch(name):
                raise TenantConfigError(
                    f"{source}: tenant name {name!r} must be 1-64 of A-Z a-z 0-9 . _ -"
                )
            if not _KEY_RE.fullmatch(key) or "," in key:
                raise TenantConfigError(
                    f"{source}: the key of tenant {name!r} must be non-empty printable ASCII "
                    "without spaces or commas"
                )
            raw = key.encode()
            if name in by_name:
                raise TenantConfigError(
                    f"{source}: tenant name {name!r} is already used by {by_name[name]}"
                )
            if raw in by_key:
                raise TenantConfigError(
                    f"{source}: the key of tenant {name!r} is already the key of {by_key[raw]}"
                )
            by_name[name] = source
            by_key[raw] = source
            parsed.append(_Entry(name, raw, source))
        self._candidates: tuple[tuple[bytes, Tenant], ...] = tuple(
            (hashlib.sha256(e.key).digest(), Tenant(e.name, admin=e.name == ADMIN_NAME))
            for e in parsed
        )
        self._names = frozenset(by_name)

    @classmethod
    def from_settings(cls, settings: Settings) -> Tenants:
        """The registry of ``api_key`` (admin), ``api_keys`` and ``api_keys_file``.

        Raises:
            TenantConfigError: a malformed entry, a duplicate name or key, an unreadable file.
        """
        file_text: str | None = None
        if settings.api_keys_file is not None:
            file_text = _read(settings.api_keys_file)
        return cls.parse(
            admin_key=settings.api_key,
            keys_list=settings.api_keys,
            file_text=file_text,
            file_name=str(settings.api_keys_file),
        )

    @classmethod
    def parse(
        cls,
        *,
        admin_key: str | None = None,
        keys_list: str | None = None,
        file_text: str | None = None,
        file_name: str = "api_keys_file",
    ) -> Tenants:
        """The registry from the three sources' raw text (pure: no file access)."""
        entries: list[tuple[str, str, str]] = []
        if admin_key:
            entries.append((ADMIN_NAME, admin_key, "FAKEAI_API_KEY"))
        if keys_list:
            for i, item in enumerate(keys_list.split(","), 1):
                if item.strip():
                    entries.append(_name_key(item, f"FAKEAI_API_KEYS item {i}"))
        if file_text is not None:
            for n, line in enumerate(file_text.splitlines(), 1):
                text = line.strip()
                if text and not text.startswith("#"):
                    entries.append(_name_key(text, f"{file_name} line {n}"))
        return cls(entries)

    @property
    def open(self) -> bool:
        """No key configured: every request is :data:`ANONYMOUS` (no 401, no ownership)."""
        return not self._candidates

    @property
    def names(self) -> frozenset[str]:
        return self._names

    def __len__(self) -> int:
        return len(self._candidates)

    def lookup(self, token: str | bytes) -> Tenant | None:
        """The tenant whose key is ``token``, or None (also on an open server: use
        :meth:`authenticate` for requests).

        Every configured key's digest is compared, each with :func:`hmac.compare_digest`, and
        the loop never exits early: the time taken depends on the number of keys, not on
        which one matched or how much of one did.
        """
        raw = token.encode("utf-8", "surrogatepass") if isinstance(token, str) else token
        digest = hashlib.sha256(raw).digest()
        found: Tenant | None = None
        for key_digest, tenant in self._candidates:
            if hmac.compare_digest(key_digest, digest):
                found = tenant
        return found

    def authenticate(self, authorization: bytes | str | None) -> Tenant | None:
        """The caller of a request from its ``Authorization`` header value: :data:`ANONYMOUS`
        on an open server; else the tenant of ``Bearer <key>`` (scheme case-insensitive, as in
        RFC 9110 section 11.1), or None (answer 401)."""
        if self.open:
            return ANONYMOUS
        if authorization is None:
            return None
        raw = (
            authorization.encode("utf-8", "surrogatepass")
            if isinstance(authorization, str)
            else authorization
        )
        if raw[: len(_BEARER)].lower() != _BEARER:
            return None
        return self.lookup(raw[len(_BEARER) :].strip(b" \t"))


def _name_key(item: str, source: str) -> tuple[str, str, str]:
    name, sep, key = item.strip().partition(":")
    if not sep:
        raise TenantConfigError(f"{source}: expected name:key, got {_redact(item.strip())!r}")
    return name.strip(), key.strip(), source


def _redact(text: str) -> str:
    """A malformed entry may be a bare key: never echo more than its first characters."""
    return text if len(text) <= 4 else text[:4] + "…"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TenantConfigError(f"FAKEAI_API_KEYS_FILE {path}: cannot read it ({e})") from e
