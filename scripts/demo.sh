#!/usr/bin/env bash
# make demo: a simulated vehicle (tcu-sim), a local dev cloud (tcu-devcloud)
# and the agent, on loopback and a unix socket; no hardware, no AWS account.
# Shows telemetry arriving, then one door.lock and one door.unlock round
# trip, then pushes a new signal to the agent through an AWS IoT Jobs
# configuration job (skipped if this agent has no [jobs] support), then
# stops everything it started and exits 0. Ctrl-C stops it early.
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

CLOUD_DIR=$DEMO_DIR/cloud          # fleet key, file server CA, bundles
start devcloud "$BIN/tcu-devcloud" serve --addr "$ADDR" --dir "$CLOUD_DIR"
start sim      "$BIN/tcu-sim" --vbus "$DEMO_DIR/vbus.sock" --scenario parked --nmea-pty --nmea-link "$DEMO_DIR/gnss"

# The agent trusts the dev cloud's fleet key and file server CA for
# configuration jobs: the demo config plus a [jobs] section.
for _ in $(seq 1 100); do [ -s "$CLOUD_DIR/fleet-key.pub" ] && [ -s "$CLOUD_DIR/files-ca.pem" ] && break; sleep 0.1; done
AGENT_CFG=$DEMO_DIR/tcu-agent.toml
cp configs/demo.toml "$AGENT_CFG"
cp configs/vehicle.dbc "$DEMO_DIR/vehicle.dbc"
cat >> "$AGENT_CFG" <<EOF

[jobs]
public_keys = ["$CLOUD_DIR/fleet-key.pub"]
ca_file = "$CLOUD_DIR/files-ca.pem"
proving_time = "10s"
EOF
JOBS=1
if ! "$BIN/tcu-agent" check-config --config "$AGENT_CFG" > "$DEMO_DIR/check-config.log" 2>&1; then
  if grep -q 'unknown section or key "jobs"' "$DEMO_DIR/check-config.log"; then
    echo "== this tcu-agent has no [jobs] support: the configuration-job step will be skipped"
    JOBS=0
    AGENT_CFG=configs/demo.toml
  else
    cat "$DEMO_DIR/check-config.log" >&2
    exit 1
  fi
fi
start agent    "$BIN/tcu-agent" run --config "$AGENT_CFG"

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

if [ "$JOBS" = 1 ]; then
  # A bundle: the running config with one more signal (the engine speed,
  # in the DBC but not collected so far), and the DBC it references.
  NEW_SIGNAL=Vehicle.Powertrain.CombustionEngine.Speed
  mkdir -p "$DEMO_DIR/bundle"
  cp "$DEMO_DIR/vehicle.dbc" "$DEMO_DIR/bundle/vehicle.dbc"
  awk -v sig="$NEW_SIGNAL" '
    held != "" { if ($0 == "name = \"gnss\"") { print "  [[driver.signal]]"; print "  name = \"" sig "\""; print "  source = \"POWERTRAIN.EngineRPM\""; print "  heartbeat = \"1s\""; print "" }
                 print held; held = "" }
    $0 == "[[driver]]" { held = $0; next }
    { print }' "$AGENT_CFG" > "$DEMO_DIR/bundle/tcu-agent.toml"
  grep -q "$NEW_SIGNAL" "$DEMO_DIR/bundle/tcu-agent.toml" || { echo "could not add $NEW_SIGNAL to the bundle" >&2; exit 1; }
  echo "== pushing a configuration job that adds $NEW_SIGNAL"
  "$BIN/tcu-devcloud" job push "$DEMO_DIR/bundle" --addr "$ADDR" --thing "$THING" --version "demo.1" --wait 120s
  echo "== waiting for $NEW_SIGNAL in telemetry (up to 15 s)"
  got=0
  for _ in $(seq 1 150); do
    if grep -q "signals.*$THING: new.*$NEW_SIGNAL" "$DEMO_DIR/devcloud.log" 2>/dev/null; then got=1; break; fi
    sleep 0.1
  done
  if [ "$got" != 1 ]; then echo "$NEW_SIGNAL did not arrive" >&2; exit 1; fi
  "$BIN/tcu-devcloud" job list --addr "$ADDR" --thing "$THING"
  echo "== demo done: telemetry flowed, lock and unlock SUCCEEDED, a configuration job added $NEW_SIGNAL"
else
  echo "== demo done: telemetry flowed, lock and unlock SUCCEEDED"
fi
