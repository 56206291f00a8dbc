#!/bin/sh
# tcu-agent postrm (deb) / %postun (rpm): let a running systemd forget the
# removed unit file; on purge forget the remove marker (postinstall.sh).
# The device identity and queue in /var/lib/tcu-agent, the claim
# certificate an operator put in /etc/tcu-agent/claim/ and the user are
# kept, also on purge (docs/operations.md, "Removing the package").
set -e

root=${DPKG_ROOT:-}
if [ "$1" = purge ]; then
	rm -rf "$root/var/lib/tcu-agent-package"
fi
if [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload || true
fi
exit 0
