#!/usr/bin/env bash
# CI: install the packaging tools, build every package (make package) and run
# the packaging tests with nothing skipped: systemd-analyze verify/security on
# the unit, sysusers/tmpfiles in a scratch root, the contents of each .deb and
# .rpm, and an install/upgrade/remove/purge of the amd64 .deb in a throwaway
# root (dpkg --root, maintainer scripts chrootless).
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
command -v rpm >/dev/null 2>&1 || need+=(rpm)
command -v make >/dev/null 2>&1 || need+=(make)
command -v git >/dev/null 2>&1 || need+=(git)
if ((${#need[@]} > 0)); then
	echo "== installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
systemd-analyze --version | head -n 1

start=$SECONDS
make package-test
echo "== packaging took $((SECONDS - start)) s"
