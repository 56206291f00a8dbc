#!/usr/bin/env bash
# Create and bring up virtual CAN interfaces for a bench or a dev machine:
#
#   sudo scripts/vcan-setup.sh                 vcan0
#   sudo scripts/vcan-setup.sh vcan0 vcan1     several
#   sudo scripts/vcan-setup.sh --fd vcan0      CAN FD capable (MTU 72)
#   sudo scripts/vcan-setup.sh --down vcan0    delete them again
#   scripts/vcan-setup.sh -n vcan0             print the commands only
#
# Needs root (CAP_NET_ADMIN) and a kernel with the vcan module. Build
# machines without CAN support (no module) run the SocketCAN tests in a VM
# instead: make vmtest.
set -euo pipefail

usage() { sed -n '2,12s/^# \{0,1\}//p' "$0"; }

dry=0 fd=0 down=0
ifaces=()
while (($#)); do
	case $1 in
	-n | --dry-run) dry=1 ;;
	--fd) fd=1 ;;
	--down) down=1 ;;
	-h | --help) usage; exit 0 ;;
	-*) echo "vcan-setup: unknown option $1" >&2; usage >&2; exit 2 ;;
	*) ifaces+=("$1") ;;
	esac
	shift
done
((${#ifaces[@]})) || ifaces=(vcan0)

do_() {
	echo "+ $*"
	((dry)) || "$@"
}

for i in "${ifaces[@]}"; do
	[[ $i =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || { echo "vcan-setup: bad interface name $i" >&2; exit 2; }
done

if ((down)); then
	for i in "${ifaces[@]}"; do
		if ((dry)) || ip link show dev "$i" >/dev/null 2>&1; then
			do_ ip link delete dev "$i"
		fi
	done
	exit 0
fi

if ((!dry)) && [[ ! -d /sys/module/vcan ]]; then
	if ! modprobe vcan 2>/dev/null; then
		echo "vcan-setup: cannot load the vcan module (no CAN support in this kernel?); use make vmtest" >&2
		exit 1
	fi
fi
for i in "${ifaces[@]}"; do
	if ((dry)) || ! ip link show dev "$i" >/dev/null 2>&1; then
		do_ ip link add dev "$i" type vcan
	fi
	if ((fd)); then
		do_ ip link set dev "$i" mtu 72
	fi
	do_ ip link set dev "$i" up
done
((dry)) || ip -brief link show type vcan
