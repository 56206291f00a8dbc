#!/usr/bin/env bash
# README's first command, `make demo`, end to end: simulated vehicle + local
# dev cloud + agent drive, park, run a configuration job, lock and unlock,
# let the bus sleep (deep sleep) and wake it with an unlock. scripts/demo.sh
# exits non-zero when a step does not happen; about 3 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
timeout 600 make demo
