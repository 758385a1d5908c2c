#!/usr/bin/env bash
# Comparison benchmarks for docs/benchmarks.md, in a separate venv (var/bench-venv):
# PySyncObj (a 3-node Raft group), lobby and pyorderbook (order books) are
# comparison points, never project dependencies.
#
#   scripts/bench-compare.sh            # books + pysyncobj
#   scripts/bench-compare.sh books      # only the order books
#   scripts/bench-compare.sh pysyncobj  # only the PySyncObj group
#   SECONDS_PER_RUN=10 OPS=200000 scripts/bench-compare.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BENCH_VENV:-$ROOT/var/bench-venv}"
PYTHON="${PYTHON:-python3.11}"
WHAT="${1:-all}"
OPS="${OPS:-200000}"
SEED="${SEED:-7}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-10}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT" \
    pysyncobj==0.3.17 lobby==0.1.3 pyorderbook==0.4.9 matplotlib==3.11.2

# The mypyc-compiled engine (make native) needs its runtime library, which
# scripts/build_native.py put into the project's .venv; share it.
site_of() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
if [ -x "$ROOT/.venv/bin/python" ]; then
    MAIN_SITE="$(site_of "$ROOT/.venv/bin/python")"
    if [ -f "$MAIN_SITE/clob-native-runtime.txt" ]; then
        for lib in $(cat "$MAIN_SITE/clob-native-runtime.txt"); do
            cp "$MAIN_SITE/$lib" "$(site_of "$VENV/bin/python")/"
        done
    fi
fi

echo "date $(date -u +%Y-%m-%dT%H:%MZ), nproc $(nproc), $("$VENV/bin/python" --version)"
cd "$ROOT"
if [ "$WHAT" = all ] || [ "$WHAT" = books ]; then
    echo "== order books: lobby, pyorderbook, clob engine =="
    "$VENV/bin/python" scripts/bench/books.py --ops "$OPS" --seed "$SEED" --repeat "${REPEAT:-3}"
fi
if [ "$WHAT" = all ] || [ "$WHAT" = pysyncobj ]; then
    echo "== PySyncObj 3-node group on 127.0.0.1 =="
    for window in 100 1000 10000; do
        "$VENV/bin/python" scripts/bench/pysyncobj_group.py \
            --seconds "$SECONDS_PER_RUN" --window "$window"
    done
    "$VENV/bin/python" scripts/bench/pysyncobj_group.py \
        --seconds "$SECONDS_PER_RUN" --window 1000 --journal
fi
