#!/bin/sh
# tcu-agent postinst (deb) / %post (rpm): create the system user, reload
# systemd, enable on first install, start or restart. Nothing else.
#
# Works on a running system, in an image build or chroot (no systemd
# running: only the user, the directories and the enablement symlink are
# made) and in a chrootless `dpkg --root=DIR --force-script-chrootless`
# install, where dpkg sets $DPKG_ROOT.
set -e

unit=tcu-agent.service
root=${DPKG_ROOT:-}

# deb: configure <old-version>; rpm: 1 = install, 2 = upgrade.
case "$1" in
configure) if [ -z "$2" ]; then first=yes; else first=no; fi ;;
1) first=yes ;;
2) first=no ;;
*) exit 0 ;;
esac

if command -v systemd-sysusers >/dev/null 2>&1; then
	systemd-sysusers ${root:+--root="$root"} tcu-agent.conf
else
	echo "tcu-agent: systemd-sysusers not found; create user tcu-agent by hand" >&2
fi
if command -v systemd-tmpfiles >/dev/null 2>&1; then
	systemd-tmpfiles ${root:+--root="$root"} --create tcu-agent.conf
fi

command -v systemctl >/dev/null 2>&1 || exit 0
if [ "$first" = yes ]; then
	systemctl ${root:+--root="$root"} enable "$unit"
fi
# Only touch the service manager when it runs and we are not installing
# into another root.
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	# --no-block: do not hold dpkg until READY=1; an unconfigured agent
	# exits 78 and stays stopped (RestartPreventExitStatus=78).
	if [ "$first" = yes ]; then
		systemctl --no-block start "$unit" || true
	else
		systemctl --no-block try-restart "$unit" || true
	fi
fi
exit 0
