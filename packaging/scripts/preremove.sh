#!/bin/sh
# tcu-agent prerm (deb) / %preun (rpm): on removal (not upgrade) record
# whether the service was enabled (deb: a reinstall restores it, see
# postinstall.sh), stop and disable it. State in /var/lib/tcu-agent (the
# device identity) and the user are kept, also on purge: see
# docs/operations.md to reset a unit.
set -e

unit=tcu-agent.service
root=${DPKG_ROOT:-}

# deb: remove; rpm: 0 = removal (1 = upgrade).
case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

command -v systemctl >/dev/null 2>&1 || exit 0
if [ "$1" = remove ]; then
	state=disabled
	if systemctl ${root:+--root="$root"} -q is-enabled "$unit" 2>/dev/null; then
		state=enabled
	fi
	mkdir -p "$root/var/lib/tcu-agent-package"
	echo "$state" >"$root/var/lib/tcu-agent-package/removed"
fi
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
	systemctl stop "$unit" || true
fi
systemctl ${root:+--root="$root"} disable "$unit" || true
exit 0
