#!/usr/bin/env bash
# Installs Debian's mosquitto and runs the uplink tests against it as a
# second, real broker (TCU_REQUIRE_MOSQUITTO=1 turns a missing broker into
# a failure instead of a skip), plus the reconnect-storm test.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mosquitto
fi
# The package starts a system broker on :1883; the tests start their own.
if command -v systemctl >/dev/null 2>&1; then
	systemctl stop mosquitto >/dev/null 2>&1 || true
fi

TCU_REQUIRE_MOSQUITTO=1 go test -race -count=1 -run 'Mosquitto|ReconnectStorm' ./agent/uplink/
