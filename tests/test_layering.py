"""Import rules: clob <- shard <- gateway <- cli, and pure cores stay pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> top-level packages it must never import
FORBIDDEN = {
    "clob": {
        "shard",
        "gateway",
        "cli",
        "config",
        "trio",
        "trio_websocket",
        "time",
        "random",
        "socket",
        "os",
        "threading",
        "asyncio",
    },
    "shard": {"gateway", "cli", "asyncio", "threading"},
    "gateway": {"cli", "chaos", "asyncio", "threading"},
    "config": {"shard", "gateway", "cli", "trio"},
}
# The package loader may read the environment and stat its own files (it
# refuses a stale compiled build and honours CLOB_PURE); the engine may not.
LOADER_EXEMPTIONS = {Path("clob/__init__.py"): {"os"}}
# the consensus core is sans-I/O like the engine
PURE_SUBPACKAGES = {"shard/raft": {"trio", "time", "random", "socket", "os", "asyncio"}}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _cases() -> list[tuple[Path, set[str]]]:
    cases = []
    for package, banned in FORBIDDEN.items():
        cases += [(p, banned) for p in sorted((ROOT / package).rglob("*.py"))]
    for sub, banned in PURE_SUBPACKAGES.items():
        cases += [(p, banned) for p in sorted((ROOT / sub).rglob("*.py"))]
    return cases


@pytest.mark.parametrize(("path", "banned"), _cases(), ids=lambda v: str(v)[len(str(ROOT)) + 1 :])
def test_module_respects_layering(path: Path, banned: set[str]) -> None:
    bad = _imports(path) & (banned - LOADER_EXEMPTIONS.get(path.relative_to(ROOT), set()))
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_layering_rules_find_modules() -> None:
    assert any(p.parent.name == "clob" for p, _ in _cases())
