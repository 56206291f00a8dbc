#!/usr/bin/env bash
# Remote-command system tests against Debian's mosquitto and the real
# binary (docs/commands.md): 60+ SIGKILLs after the backend's PUBACK, the
# 300-request flood and the arrival-order test. `make test` runs the short
# variants when mosquitto is installed; this step runs the full ones and
# fails if the broker is missing (20-mosquitto.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/../.."

TCU_REQUIRE_MOSQUITTO=1 go test -count=1 -timeout 20m -run 'TestSystemCommand(KillAfterPuback|Flood|ArrivalOrder)' ./agent/agenttest/
