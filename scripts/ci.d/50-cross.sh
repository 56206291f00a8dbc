#!/usr/bin/env bash
# CI: cross-build the static arm64 and armv7 binaries, report the arm64
# agent's size, and run the pure-Go unit tests of the arm64 build under
# qemu-user (qemu-aarch64-static from Debian's qemu-user-static).
#
# Which packages run under qemu: every package of the module except
#   cmd/...             end-to-end tests that build and run whole programs
#                       (covered natively on amd64 by make test)
#   packaging           checks host tools (systemd-analyze, dpkg), not Go code
#   drivers/socketcan   needs AF_CAN, which qemu-user cannot provide (the
#                       kernel is the host's): covered by make vmtest
#   */agenttest         system tests with long timing
# CROSS_TEST_PKGS overrides the list (space-separated import paths/patterns).
# Tests run with -short, without -race (the race detector needs cgo), one
# package at a time (-p 1) so that emulation load does not starve timers.
set -euo pipefail
cd "$(dirname "$0")/../.."

GO=${GO:-go}
VERSION=${VERSION:-$(git describe --tags --dirty --always 2>/dev/null || echo dev)}
LDFLAGS="-s -w -X main.version=$VERSION"

if ! command -v qemu-aarch64-static >/dev/null 2>&1; then
	echo "== installing qemu-user-static"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null
fi

echo "== cross build (static, stripped)"
CGO_ENABLED=0 GOOS=linux GOARCH=arm64 "$GO" build -trimpath -ldflags "$LDFLAGS" -o build/linux_arm64/ ./cmd/...
CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 "$GO" build -trimpath -ldflags "$LDFLAGS" -o build/linux_armv7/ ./cmd/...
size=$(stat -c %s build/linux_arm64/tcu-agent)
echo "tcu-agent linux/arm64: $size bytes ($((size / 1024 / 1024)) MiB, limit 25 MB)"
if ((size > 25 * 1000 * 1000)); then
	echo "FAIL: arm64 tcu-agent exceeds 25 MB" >&2
	exit 1
fi
# The binaries must run: print their version under emulation.
qemu-aarch64-static build/linux_arm64/tcu-agent version
if command -v qemu-arm-static >/dev/null 2>&1; then
	qemu-arm-static build/linux_armv7/tcu-agent version
fi

if [[ -n ${CROSS_TEST_PKGS:-} ]]; then
	read -r -a pkgs <<<"$CROSS_TEST_PKGS"
else
	mapfile -t pkgs < <("$GO" list ./... | grep -v -E '/cmd/|/packaging$|/drivers/socketcan$|/agenttest$')
fi
echo "== arm64 unit tests under qemu-aarch64-static (${#pkgs[@]} packages)"
start=$SECONDS
CGO_ENABLED=0 GOOS=linux GOARCH=arm64 "$GO" test -short -count=1 -p 1 -timeout 5m \
	-exec qemu-aarch64-static "${pkgs[@]}"
echo "== arm64 tests under qemu took $((SECONDS - start)) s"
