#!/usr/bin/env bash
# Run the replica groups of the default local topology as `clob node` processes.
#
#   scripts/run-replica-cluster.sh            every market's group
#   scripts/run-replica-cluster.sh BTC-USD    one market's group
#
# CONFIG=path overrides config/local.toml. Logs go to var/local/logs/NAME.log.
# Ctrl-C (or SIGTERM) stops every replica with SIGTERM (clean shutdown).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
CONFIG="${CONFIG:-config/local.toml}"
MARKET="${1:-}"
cd "$ROOT"

NODES="$("$PY" - "$CONFIG" "$MARKET" <<'PYEOF'
import sys
from config.load import load_config
cluster = load_config(sys.argv[1])
wanted = sys.argv[2]
markets = [m for m in cluster.markets if not wanted or m.name == wanted]
if not markets:
    sys.exit(f"no market {wanted!r} in {sys.argv[1]}")
print(" ".join(r.name for m in markets for r in m.replicas if not r.join))
PYEOF
)"

# the cluster secret the topology names (if any), created on first use as `clob up` does
if "$PY" -c "import sys; from config.load import load_config; \
sys.exit(0 if load_config(sys.argv[1]).secret_file else 1)" "$CONFIG"; then
  "$PY" -c "from cli.main import main; main()" admin create-secret --config "$CONFIG"
fi

mkdir -p var/local/logs
PIDS=()
stop() {
  echo "stopping: ${NODES}"
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait
}
trap stop INT TERM

for node in $NODES; do
  "$PY" -c "from cli.main import main; main()" node --config "$CONFIG" --node "$node" \
    >>"var/local/logs/$node.log" 2>&1 &
  PIDS+=($!)
  echo "started $node (pid $!), log var/local/logs/$node.log"
done
echo "status: clob admin status --config $CONFIG"
wait
