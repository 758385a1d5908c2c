#!/usr/bin/env bash
# Chaos runs against a local cluster: 2 markets x 3 replicas + 2 gateways, seeded faults.
#
#   scripts/chaos.sh                 # one 90 s run, seed 1
#   scripts/chaos.sh 300s 1 2 3      # three 5-minute runs with seeds 1, 2 and 3
#
# Exits non-zero as soon as a run finds a violation (its run directory is kept
# and printed: configs, data directories, process logs, history.jsonl, report.txt).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
make --quiet native
DURATION="${1:-90s}"
shift || true
SEEDS=("$@")
if [ "${#SEEDS[@]}" -eq 0 ]; then
    SEEDS=(1)
fi
for seed in "${SEEDS[@]}"; do
    echo "== clob chaos --duration $DURATION --seed $seed =="
    .venv/bin/clob chaos --duration "$DURATION" --seed "$seed"
done
