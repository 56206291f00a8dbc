#!/bin/sh
# tcu-agent postrm (deb) / %postun (rpm): let a running systemd forget the
# removed unit file. Nothing else.
set -e

root=${DPKG_ROOT:-}
if [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload || true
fi
exit 0
