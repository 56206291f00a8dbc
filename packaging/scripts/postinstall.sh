#!/bin/sh
# tcu-agent postinst (deb) / %post (rpm): create the system user and the
# directories, reload systemd, then enable and start the service the way
# debhelper's deb-systemd-helper does:
#
#   first install (deb: configure with no old version; rpm: 1)
#       enable + start
#   reinstall after a remove, not purge (deb: configure <old-version> and
#   the marker the prerm left on remove exists)
#       enable + start if the unit was enabled when it was removed (the
#       marker says so); left disabled if the operator had disabled it
#   upgrade (deb: configure <old-version>, no marker; rpm: 2)
#       keep the operator's enablement; try-restart (a stopped service
#       stays stopped, a running one runs the new binary)
#   abort-remove (deb: the removal failed after prerm stopped it)
#       start again if enabled
#
# Works on a running system, in an image build or chroot (no systemd
# running: only the user, the directories and the enablement symlink are
# made) and in a chrootless `dpkg --root=DIR --force-script-chrootless`
# install, where dpkg sets $DPKG_ROOT.
set -e

unit=tcu-agent.service
root=${DPKG_ROOT:-}
# Left by the prerm on remove (not on upgrade), deleted by the postrm on
# purge; holds "enabled" or "disabled": the unit's state when removed.
marker=$root/var/lib/tcu-agent-package/removed

# action: install (enable + start), reinstall (per marker), upgrade
# (try-restart) or restart-if-enabled (abort-remove).
case "$1" in
configure)
	if [ -z "$2" ]; then
		action=install
	elif [ -e "$marker" ]; then
		action=reinstall
	else
		action=upgrade
	fi
	;;
abort-remove) action=restart-if-enabled ;;
1) action=install ;;
2) action=upgrade ;;
*) exit 0 ;;
esac
if [ "$action" = reinstall ]; then
	if [ "$(cat "$marker" 2>/dev/null)" = disabled ]; then
		action=upgrade
	else
		action=install
	fi
fi
rm -f "$marker"
rmdir "$root/var/lib/tcu-agent-package" 2>/dev/null || true

if command -v systemd-sysusers >/dev/null 2>&1; then
	systemd-sysusers ${root:+--root="$root"} tcu-agent.conf
else
	echo "tcu-agent: systemd-sysusers not found; create user tcu-agent by hand" >&2
fi
if command -v systemd-tmpfiles >/dev/null 2>&1; then
	systemd-tmpfiles ${root:+--root="$root"} --create tcu-agent.conf
fi

command -v systemctl >/dev/null 2>&1 || exit 0
if [ "$action" = install ]; then
	systemctl ${root:+--root="$root"} enable "$unit"
fi
# Only touch the service manager when it runs and we are not installing
# into another root.
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	# --no-block: do not hold dpkg until READY=1; an agent with a broken
	# configuration exits 78 and stays stopped (RestartPreventExitStatus=78).
	case $action in
	install) systemctl --no-block start "$unit" || true ;;
	upgrade) systemctl --no-block try-restart "$unit" || true ;;
	restart-if-enabled)
		if systemctl -q is-enabled "$unit" 2>/dev/null; then
			systemctl --no-block start "$unit" || true
		fi
		;;
	esac
fi
exit 0
