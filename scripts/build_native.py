"""Compile the matching engine to C extensions with mypyc, or remove the build.

    python scripts/build_native.py build   # what `make native` runs
    python scripts/build_native.py clean   # what `make pure` runs

The engine is plain, strictly typed Python; mypyc turns each listed module
into an extension module placed next to its source, which the import system
then prefers. Without a C compiler the build is skipped with a warning and the
engine runs as pure Python (same behaviour, slower). mypyc also emits one
shared runtime library per build (``<hash>__mypyc``), a top-level module; it
is moved into the virtual environment's site-packages so every process of
this environment can import it whatever its working directory. mypyc's
intermediate C files stay in ./build (ignored by git).
"""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Everything in clob/ except the package __init__ (which checks the build).
MODULES = sorted(p for p in (ROOT / "clob").glob("*.py") if p.name != "__init__.py")
SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def _site() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


# Names of the runtime libraries this script moved into site-packages (other
# packages, mypy itself among them, ship runtime libraries of their own).
RECORD = "clob-native-runtime.txt"


def clean() -> None:
    """Remove every compiled module and runtime library of a previous build."""
    for path in (ROOT / "clob").iterdir():
        if path.name.endswith(SUFFIXES):
            path.unlink()
    record = _site() / RECORD
    if record.exists():
        for name in record.read_text().split():
            (_site() / name).unlink(missing_ok=True)
        record.unlink()


def build() -> int:
    """Compile MODULES; on failure leave no partial build and say why."""
    clean()
    mypyc = Path(sys.executable).with_name("mypyc")
    env = dict(os.environ, MYPYC_OPT_LEVEL="3")
    print(f"mypyc: compiling {len(MODULES)} engine modules (about 30 s)...", flush=True)
    result = subprocess.run(
        [str(mypyc), *(str(p.relative_to(ROOT)) for p in MODULES)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        clean()
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        print(f"{tail}\nWARNING: mypyc build failed; the engine runs as pure Python.", flush=True)
        return 0
    moved = []
    for runtime in ROOT.glob("*__mypyc*"):
        if runtime.name.endswith(SUFFIXES):
            shutil.move(str(runtime), _site() / runtime.name)
            moved.append(runtime.name)
    (_site() / RECORD).write_text("\n".join(moved) + "\n")
    # setuptools copies an unchanged extension with its old mtime; the package
    # compares mtimes to find stale builds, so mark these as built now
    built = [p for p in (ROOT / "clob").iterdir() if p.name.endswith(SUFFIXES)]
    for path in built:
        os.utime(path)
    count = len(built)
    print(f"mypyc: {count} compiled engine modules in clob/", flush=True)
    return 0


def main() -> int:
    action = sys.argv[1] if len(sys.argv) > 1 else "build"
    if action == "build":
        return build()
    if action == "clean":
        clean()
        return 0
    print(f"usage: {sys.argv[0]} build|clean", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
