#!/usr/bin/env bash
# Failover test of one replica group of real `clob node` processes (fsync on).
#
#   scripts/replica-cluster-failover-test.sh [WORKDIR]
#
# 1. start a 3-replica group on free ports (its own topology under WORKDIR),
#    post orders, check every replica holds the same state (same seq, same digest);
# 2. kill -9 a follower, check service continues, restart it;
# 3. kill -9 the leader, check a new leader acknowledges within FAILOVER_LIMIT
#    seconds and no acknowledged order is lost;
# 4. restart the old leader and check all replicas catch up to identical state.
# Exits non-zero on the first failure; every step is bounded in time.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
CLOB=("$PY" -c "from cli.main import main; main()")
WORK="${1:-$(mktemp -d /tmp/clob-failover.XXXXXX)}"
FAILOVER_LIMIT="${FAILOVER_LIMIT:-5}"
MARKET=BTC-USD
declare -A PIDS=()

probe() { timeout 60 "$PY" "$ROOT/scripts/replica_probe.py" "$@"; }
log() { echo "[failover-test] $*"; }

cleanup() {
  for name in "${!PIDS[@]}"; do kill -9 "${PIDS[$name]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

start_node() {
  "${CLOB[@]}" node --config "$CONFIG" --node "$1" >>"$WORK/$1.log" 2>&1 &
  PIDS[$1]=$!
}

kill_node() {
  kill -9 "${PIDS[$1]}"
  wait "${PIDS[$1]}" 2>/dev/null || true
  unset "PIDS[$1]"
}

cd "$ROOT"
CONFIG="$(probe topology "$WORK")"
log "workdir $WORK"
for n in btc-usd-1 btc-usd-2 btc-usd-3; do start_node "$n"; done
LEADER="$(probe wait-leader "$CONFIG" "$MARKET")"
log "leader: $LEADER"
probe post "$CONFIG" "$MARKET" 200 a "$WORK/acked.txt"
probe check-same "$CONFIG" "$MARKET"

FOLLOWER="$(probe followers "$CONFIG" "$MARKET" | cut -d' ' -f1)"
log "kill -9 follower $FOLLOWER"
kill_node "$FOLLOWER"
probe post "$CONFIG" "$MARKET" 100 b "$WORK/acked.txt"
log "service continued without $FOLLOWER; restarting it"
start_node "$FOLLOWER"
probe check-same "$CONFIG" "$MARKET"

LEADER="$(probe wait-leader "$CONFIG" "$MARKET")"
log "kill -9 leader $LEADER"
KILLED_AT="$(date +%s.%N)"
kill_node "$LEADER"
SECONDS_TO_ACK="$(probe first-ack "$CONFIG" "$MARKET" c "$KILLED_AT")"
echo "c-0" >>"$WORK/acked.txt"
log "next acknowledgement ${SECONDS_TO_ACK}s after the leader was killed"
if ! awk -v t="$SECONDS_TO_ACK" -v lim="$FAILOVER_LIMIT" 'BEGIN { exit !(t <= lim) }'; then
  log "FAIL: failover took ${SECONDS_TO_ACK}s (limit ${FAILOVER_LIMIT}s)"
  exit 1
fi
probe post "$CONFIG" "$MARKET" 100 d "$WORK/acked.txt"
probe check-orders "$CONFIG" "$MARKET" "$WORK/acked.txt"

log "restarting $LEADER"
start_node "$LEADER"
probe check-same "$CONFIG" "$MARKET"
probe check-orders "$CONFIG" "$MARKET" "$WORK/acked.txt"
log "PASS"
