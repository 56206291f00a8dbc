#!/usr/bin/env bash
# make demo: a simulated vehicle (tcu-sim), a local dev cloud (tcu-devcloud)
# and the agent, on loopback and a unix socket; no hardware, no AWS account.
# Shows telemetry arriving, then one door.lock and one door.unlock round
# trip, then stops everything it started and exits 0. Ctrl-C stops it early.
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_DIR=/tmp/tcu-demo            # must match configs/demo.toml
ADDR=127.0.0.1:18830              # must match configs/demo.toml
THING=demo-car-001                # must match configs/demo.toml
BIN=build

echo "== building"
make -s build

rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
pids=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # Newest first: the agent stops (and says "offline") before the broker goes.
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    local pid=${pids[$i]}
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# Prefix each program's output so the three streams stay readable.
start() {
  local tag=$1; shift
  "$@" > >(tee "$DEMO_DIR/$tag.log" | sed -u "s/^/[$tag] /") 2>&1 &
  pids+=($!)
}

start devcloud "$BIN/tcu-devcloud" serve --addr "$ADDR"
start sim      "$BIN/tcu-sim" --vbus "$DEMO_DIR/vbus.sock" --scenario parked --nmea-pty --nmea-link "$DEMO_DIR/gnss"
start agent    "$BIN/tcu-agent" run --config configs/demo.toml

echo "== waiting for telemetry (up to 15 s)"
got=0
for _ in $(seq 1 150); do
  if grep -q "telemetry.*$THING\|$THING.*telemetry" "$DEMO_DIR/devcloud.log" 2>/dev/null; then got=1; break; fi
  sleep 0.1
done
if [ "$got" != 1 ]; then echo "no telemetry arrived" >&2; exit 1; fi
echo "== telemetry is flowing"
sleep 2

for cmd in door.lock door.unlock; do
  echo "== sending $cmd"
  "$BIN/tcu-devcloud" send --addr "$ADDR" --thing "$THING" --name "$cmd" --timeout 15s
done
echo "== demo done: telemetry flowed, lock and unlock SUCCEEDED"
