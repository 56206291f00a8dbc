#!/usr/bin/env bash
# make demo: a simulated vehicle (tcu-sim), a local dev cloud (tcu-devcloud)
# and the agent, on loopback and a unix socket; no hardware, no AWS account.
# The simulated car drives one short trip and parks (tcu-sim's drive-park
# scenario). Shows telemetry arriving, pushes a new signal to the agent
# through an AWS IoT Jobs configuration job (skipped if this agent has no
# [jobs] support), waits for the parked profile, then door.lock,
# door.unlock and door.lock round trips; then the car stands: its bus falls asleep
# (SLEEP_AFTER), the agent goes to deep sleep, and a door.unlock from the
# cloud wakes the bus and is executed. Then it stops everything it started
# and exits 0 (about 3 minutes in all). Ctrl-C stops it early.
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_DIR=/tmp/tcu-demo            # must match configs/demo.toml
ADDR=127.0.0.1:18830              # must match configs/demo.toml
THING=demo-car-001                # must match configs/demo.toml
BIN=build
# The simulated bus sleeps after standing this long with the ignition off
# and no frame from the TCU. Longer than the parked rule's 30 s (so the
# parked profile is seen on an awake bus first) and than the standstill
# interlock's max_age (3 s, so the last door.unlock must wake the bus),
# short enough to keep the demo at about 3 minutes.
SLEEP_AFTER=${SLEEP_AFTER:-1m}

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
start sim      "$BIN/tcu-sim" --vbus "$DEMO_DIR/vbus.sock" --scenario drive-park --sleep-after "$SLEEP_AFTER" --nmea-pty --nmea-link "$DEMO_DIR/gnss"

# The agent trusts the dev cloud's fleet key and file server CA for
# configuration jobs: the demo config plus a [jobs] section.
for _ in $(seq 1 100); do [ -s "$CLOUD_DIR/fleet-key.pub" ] && [ -s "$CLOUD_DIR/files-ca.pem" ] && break; sleep 0.1; done
# Vehicle-state profiles: the shipped rules and profiles (configs/
# tcu-agent.toml), except deep sleep after 20 s of bus silence instead of
# 15 min, so that the demo shows it.
BASE_CFG=$DEMO_DIR/tcu-agent-base.toml
cp configs/demo.toml "$BASE_CFG"
cat >> "$BASE_CFG" <<'EOF'

[profile]

  [[profile.rule]]
  profile = "driving"
  ignition = "on"

  [[profile.rule]]
  profile = "driving"
  speed_above = 5.0

  [[profile.rule]]
  profile = "deep_sleep"
  bus_silent_for = "20s"

  [[profile.rule]]
  profile = "deep_sleep"
  ignition = "off"
  off_for = "4h"

  [[profile.rule]]
  profile = "parked"
  ignition = "off"
  for = "30s"
EOF
AGENT_CFG=$DEMO_DIR/tcu-agent.toml
cp "$BASE_CFG" "$AGENT_CFG"
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
    AGENT_CFG=$BASE_CFG
  else
    cat "$DEMO_DIR/check-config.log" >&2
    exit 1
  fi
fi
start agent    "$BIN/tcu-agent" run --config "$AGENT_CFG"

# waitlog FILE PATTERN SECONDS [AFTER]: wait up to SECONDS until FILE has
# more than AFTER (default 0) lines matching PATTERN.
waitlog() {
  local file=$1 pat=$2 secs=$3 after=${4:-0} n i
  for ((i = 0; i < secs * 10; i++)); do
    n=$(count "$file" "$pat")
    if [ "${n:-0}" -gt "$after" ]; then return 0; fi
    sleep 0.1
  done
  return 1
}
count() { grep -c -- "$2" "$1" 2>/dev/null || true; }
T0=$SECONDS
stamp() { echo "== [t+$((SECONDS - T0))s] $*"; }
# The profile, battery and command lines of the agent's status.
show_status() {
  "$BIN/tcu-agent" status --config "$AGENT_CFG" 2>&1 | grep -E '^(profile|battery|last command|commands) |^telemetry +every' | sed 's/^/   | /' || true
}

stamp "waiting for telemetry (up to 15 s)"
if ! waitlog "$DEMO_DIR/devcloud.log" "telemetry.*$THING\|$THING.*telemetry" 15; then echo "no telemetry arrived" >&2; exit 1; fi
stamp "telemetry is flowing; the car drives one short trip, then parks"

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
  stamp "pushing a configuration job that adds $NEW_SIGNAL"
  "$BIN/tcu-devcloud" job push "$DEMO_DIR/bundle" --addr "$ADDR" --thing "$THING" --version "demo.1" --wait 120s
  # Telemetry goes out once a minute once the car is parked: allow for it.
  stamp "waiting for $NEW_SIGNAL in telemetry (up to 90 s)"
  if ! waitlog "$DEMO_DIR/devcloud.log" "signals.*$THING: new.*$NEW_SIGNAL" 90; then echo "$NEW_SIGNAL did not arrive" >&2; exit 1; fi
  "$BIN/tcu-devcloud" job list --addr "$ADDR" --thing "$THING"
fi

# The agent logs each profile change: msg="profile changed" from=... to=...
PARKED='profile changed.*to=parked'
stamp "waiting for the parked profile (ignition off for 30 s; up to 120 s)"
if ! waitlog "$DEMO_DIR/agent.log" "$PARKED" 120; then echo "the agent did not go parked" >&2; exit 1; fi
stamp "parked"
show_status

# The driver leaves: lock, unlock (forgot something), lock.
for cmd in door.lock door.unlock door.lock; do
  stamp "sending $cmd"
  "$BIN/tcu-devcloud" send --addr "$ADDR" --thing "$THING" --name "$cmd" --timeout 15s
done

stamp "the car stands locked: waiting for its bus to sleep ($SLEEP_AFTER after the last frame from the TCU)"
if ! waitlog "$DEMO_DIR/sim.log" "bus asleep" 300; then echo "the bus did not fall asleep" >&2; exit 1; fi
stamp "bus asleep; waiting for deep_sleep (bus silent for 20 s; up to 60 s)"
if ! waitlog "$DEMO_DIR/agent.log" "profile changed.*to=deep_sleep" 60; then echo "the agent did not go to deep_sleep" >&2; exit 1; fi
stamp "deep_sleep"
show_status

# A customer books the car: the unlock finds the standstill interlock's
# input stale, wakes the bus ([[commands.wake]]), waits for fresh inputs
# and unlocks.
woken=$(count "$DEMO_DIR/sim.log" "bus woken")
parked=$(count "$DEMO_DIR/agent.log" "$PARKED")
stamp "sending door.unlock to the sleeping car"
"$BIN/tcu-devcloud" send --addr "$ADDR" --thing "$THING" --name door.unlock --timeout 15s
if ! waitlog "$DEMO_DIR/sim.log" "bus woken" 5 "$woken"; then echo "door.unlock did not wake the bus" >&2; exit 1; fi
stamp "the bus is awake again; waiting for the parked profile (up to 60 s)"
if ! waitlog "$DEMO_DIR/agent.log" "$PARKED" 60 "$parked"; then echo "the agent did not go back to parked" >&2; exit 1; fi
stamp "parked"
show_status

if [ "$JOBS" = 1 ]; then
  stamp "demo done: telemetry flowed, a configuration job added $NEW_SIGNAL, lock and unlock SUCCEEDED, the bus slept and door.unlock woke it"
else
  stamp "demo done: telemetry flowed, lock and unlock SUCCEEDED, the bus slept and door.unlock woke it"
fi
