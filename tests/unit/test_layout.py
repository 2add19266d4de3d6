"""Every package on disk is importable as `fakeai.*` from where it lives.

A subpackage that exists in the tree but does not import as `fakeai.<name>` (a missing entry, a
stray `__init__.py` at the namespace level) fails here.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "shared", ROOT / "services"]


def _packages() -> list[tuple[str, Path]]:
    found = []
    for base in SOURCES:
        for init in sorted((base / "fakeai").rglob("__init__.py")):
            pkg_dir = init.parent
            name = ".".join(pkg_dir.relative_to(base).parts)
            found.append((name, pkg_dir))
    return found


def test_fakeai_is_a_namespace_across_both_roots() -> None:
    for base in SOURCES:
        assert not (base / "fakeai" / "__init__.py").exists()
    import fakeai

    paths = {Path(p).resolve() for p in fakeai.__path__}
    assert {(b / "fakeai").resolve() for b in SOURCES} <= paths


@pytest.mark.parametrize(("name", "pkg_dir"), _packages(), ids=lambda v: str(v))
def test_every_package_imports_from_its_folder(name: str, pkg_dir: Path) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    assert Path(module.__file__).resolve().parent == pkg_dir.resolve()
