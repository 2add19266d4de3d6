"""Tenants: the key registry from settings, bearer look-up, and who sees which stream (pure)."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

import pytest

from fakeai.config import Settings
from fakeai.services.edge import tenants as tenants_module
from fakeai.services.edge.tenants import (
    ADMIN_NAME,
    ANONYMOUS,
    NOBODY,
    OWNER_FIELD,
    SCOPE_KEY,
    Tenant,
    TenantConfigError,
    Tenants,
    can_see,
    owner_of,
    tenant_of,
    visible,
)


def test_every_source_builds_one_registry() -> None:
    reg = Tenants.parse(
        admin_key="sk-admin",
        keys_list=" carol:sk-carol , dave:sk-dave,",
        file_text="# comment\n\nalice: sk-alice\nbob:sk:bob\n",
        file_name="keys.txt",
    )
    assert not reg.open
    assert len(reg) == 5
    assert reg.names == {ADMIN_NAME, "carol", "dave", "alice", "bob"}
    assert reg.lookup("sk-admin") == Tenant(ADMIN_NAME, admin=True)
    assert reg.lookup("sk-carol") == Tenant("carol")
    assert reg.lookup("sk-alice") == Tenant("alice")
    assert reg.lookup("sk:bob") == Tenant("bob")  # the key is all after the first colon


def test_a_tenant_named_admin_in_the_list_is_the_admin() -> None:
    reg = Tenants.parse(keys_list="admin:sk-root,eve:sk-eve")
    assert reg.lookup("sk-root") == Tenant(ADMIN_NAME, admin=True)
    assert reg.lookup("sk-eve") == Tenant("eve", admin=False)


@pytest.mark.parametrize(
    ("sources", "words"),
    [
        ({"keys_list": "alice"}, "FAKEAI_API_KEYS item 1: expected name:key"),
        (
            {"keys_list": "alice:a,alice:b"},
            "FAKEAI_API_KEYS item 2: tenant name 'alice' is already",
        ),
        ({"keys_list": "alice:same,bob:same"}, "item 2: the key of tenant 'bob' is already"),
        ({"admin_key": "k", "keys_list": "bob:k"}, "is already the key of FAKEAI_API_KEY"),
        ({"admin_key": "k", "keys_list": "admin:other"}, "tenant name 'admin' is already used"),
        ({"keys_list": "al ice:k"}, "tenant name 'al ice' must be"),
        ({"keys_list": "{x}:k"}, "tenant name '{x}' must be"),
        ({"keys_list": "alice:"}, "the key of tenant 'alice' must be non-empty"),
        ({"keys_list": "alice:has space"}, "without spaces"),
        ({"file_text": "# c\nalice:a\n\nbroken line\n"}, "keys.txt line 4: expected name:key"),
        ({"file_text": "alice:a\nalice:b\n"}, "keys.txt line 2: tenant name 'alice' is already"),
        ({"file_text": "x:k\n", "keys_list": "y:k"}, "keys.txt line 1: the key of tenant 'x'"),
    ],
)
def test_malformed_or_duplicate_entries_fail_naming_the_line(
    sources: dict[str, str], words: str
) -> None:
    with pytest.raises(TenantConfigError) as e:
        Tenants.parse(file_name="keys.txt", **sources)
    assert words in str(e.value)


def test_a_malformed_entry_is_not_echoed_whole() -> None:
    """A line without a colon is probably a bare key: the error shows 4 characters of it."""
    with pytest.raises(TenantConfigError) as e:
        Tenants.parse(keys_list="sk-secret-value")
    assert "secret" not in str(e.value)


def test_from_settings_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("alice:sk-a\n# bob:sk-b\n")
    reg = Tenants.from_settings(Settings(api_key="sk-root", api_keys="c:sk-c", api_keys_file=path))
    assert reg.names == {ADMIN_NAME, "alice", "c"}
    with pytest.raises(TenantConfigError, match=r"FAKEAI_API_KEYS_FILE .*missing: cannot read"):
        Tenants.from_settings(Settings(api_keys_file=tmp_path / "missing"))
    path.write_bytes(b"alice:\xff\xfe\n")
    with pytest.raises(TenantConfigError, match="cannot read"):
        Tenants.from_settings(Settings(api_keys_file=path))


def test_no_keys_is_an_open_server() -> None:
    reg = Tenants.from_settings(Settings())
    assert reg.open
    assert reg.authenticate(None) is ANONYMOUS
    assert reg.authenticate(b"Bearer anything") is ANONYMOUS
    assert reg.lookup("anything") is None
    assert ANONYMOUS.owner is None  # its streams store no owner


@pytest.mark.parametrize(
    ("token", "name"),
    [
        ("sk-alice", "alice"),
        (b"sk-alice", "alice"),
        ("sk-alic", None),  # a prefix
        ("sk-alice2", None),  # longer
        ("", None),
        ("sk-alicé", None),
        ("sk-ali\udcce", None),  # a lone surrogate (a str from a careless decode) never raises
        (b"\xff\xfe", None),
    ],
)
def test_lookup(token: str | bytes, name: str | None) -> None:
    reg = Tenants.parse(keys_list="alice:sk-alice,bob:sk-bob")
    found = reg.lookup(token)
    assert (found.name if found else None) == name


def test_lookup_compares_every_key_without_an_early_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Constant time per candidate: each key is compared with hmac.compare_digest, and the
    first match does not end the loop (time would tell which key matched)."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tenants_module.hmac, "compare_digest", counting)
    reg = Tenants.parse(keys_list="a:k1,b:k2,c:k3,d:k4")
    assert reg.lookup("k1") == Tenant("a")
    assert len(calls) == 4
    assert {len(a) for a, _ in calls} == {32}  # digests: equal lengths whatever the key


@pytest.mark.parametrize(
    ("header", "name"),
    [
        (b"Bearer sk-bob", "bob"),
        (b"bearer sk-bob", "bob"),
        (b"BEARER  sk-bob ", "bob"),
        ("Bearer sk-bob", "bob"),
        (None, None),
        (b"", None),
        (b"Bearer", None),
        (b"Bearer ", None),
        (b"Basic sk-bob", None),
        (b"sk-bob", None),
        (b"Bearer sk-bobby", None),
    ],
)
def test_authenticate(header: bytes | str | None, name: str | None) -> None:
    reg = Tenants.parse(keys_list="bob:sk-bob")
    found = reg.authenticate(header)
    assert (found.name if found else None) == name


ALICE = Tenant("alice")
ADMIN = Tenant(ADMIN_NAME, admin=True)


@pytest.mark.parametrize(
    ("tenant", "owner", "sees"),
    [
        (ALICE, "alice", True),
        (ALICE, "bob", False),
        (ALICE, None, False),  # an ownerless stream is the admin's alone
        (ALICE, "", False),
        (ALICE, "alice ", False),
        (ADMIN, "alice", True),
        (ADMIN, None, True),
        (ANONYMOUS, "alice", True),  # an open server: everyone sees everything
        (ANONYMOUS, None, True),
    ],
)
def test_can_see(tenant: Tenant, owner: str | None, sees: bool) -> None:
    assert can_see(tenant, owner) is sees


def test_tenant_owner_is_its_name() -> None:
    assert ALICE.owner == "alice"
    assert ADMIN.owner == ADMIN_NAME


@pytest.mark.parametrize(
    ("meta", "owner"),
    [
        ({b"status": b"running", b"owner": b"alice"}, "alice"),
        ({"owner": "bob"}, "bob"),
        ({b"owner": b""}, None),
        ({b"status": b"done"}, None),
        ({}, None),
    ],
)
def test_owner_of_a_meta_hash(meta: dict[Any, Any], owner: str | None) -> None:
    assert owner_of(meta) == owner


def test_visible() -> None:
    meta = {OWNER_FIELD.encode(): b"alice"}
    assert visible(ALICE, meta)
    assert visible(ADMIN, meta)
    assert not visible(Tenant("bob"), meta)
    assert not visible(Tenant("bob"), {})
    assert visible(ANONYMOUS, {})


def test_the_caller_comes_from_the_scope_and_fails_closed() -> None:
    assert tenant_of({SCOPE_KEY: ALICE}) is ALICE
    assert tenant_of({}) is NOBODY  # the middleware did not run: see nothing
    assert not can_see(NOBODY, "alice")
    assert not can_see(NOBODY, None)
