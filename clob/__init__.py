"""Pure, deterministic matching engine: no I/O, no clock, no randomness.

The engine's modules may be compiled to C extensions with mypyc
(``make native``; see docs/engine.md). The compiled modules sit next to their
sources and are preferred by the import system, so this package refuses to
load a compiled module older than its source (a stale build would silently
run old code), and ``CLOB_PURE=1`` in the environment loads the sources even
when a build exists (for debuggers, profilers and the pure-Python test run).
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

_HERE = Path(__file__).resolve().parent
PURE_ENV = "CLOB_PURE"


class _SourceOnlyFinder:
    """A meta path finder that loads ``clob.*`` from ``.py`` files only."""

    @staticmethod
    def find_spec(
        fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(__name__ + ".") or not path:
            return None
        loader = (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES)
        return importlib.machinery.FileFinder(path[0], loader).find_spec(fullname, target)


def compiled_modules(directory: Path = _HERE) -> list[Path]:
    """The compiled extension modules in ``directory`` (this package's by default)."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return sorted(p for p in directory.iterdir() if p.name.endswith(suffixes))


def stale_modules(directory: Path = _HERE) -> list[str]:
    """Sources edited after their compiled module was built."""
    stale = []
    for built in compiled_modules(directory):
        source = built.with_name(built.name.split(".", 1)[0] + ".py")
        if source.exists() and source.stat().st_mtime > built.stat().st_mtime:
            stale.append(source.name)
    return stale


def build_kind() -> str:
    """``"compiled (mypyc)"`` when the engine runs as C extensions, else ``"pure Python"``."""
    from clob import market

    return "compiled (mypyc)" if not market.__file__.endswith(".py") else "pure Python"


if os.environ.get(PURE_ENV) == "1":
    sys.meta_path.insert(0, _SourceOnlyFinder())
elif _stale := stale_modules():
    raise ImportError(
        f"clob: compiled engine modules are older than {', '.join(_stale)}; "
        "rebuild them with `make native`, remove them with `make pure`, "
        f"or set {PURE_ENV}=1 to load the sources"
    )
