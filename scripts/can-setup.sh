#!/usr/bin/env bash
# Configure and bring up a real CAN interface (SocketCAN) on a TCU or bench:
#
#   sudo scripts/can-setup.sh                          can0, 500 kbit/s, restart-ms 100
#   sudo scripts/can-setup.sh -i can1 -b 250000        J1939 truck bus
#   sudo scripts/can-setup.sh -b 500000 --fd -d 2000000  CAN FD, 2 Mbit/s data phase
#   sudo scripts/can-setup.sh --listen-only            never ACK or transmit
#   sudo scripts/can-setup.sh --down                   take the interface down
#   scripts/can-setup.sh -n ...                        print the commands only
#
# Options: -i IFACE (can0)  -b BITRATE (500000)  -s SAMPLE_POINT (0.875)
#          -r RESTART_MS (100; 0 = stay bus-off until restarted by hand)
#          -q TXQUEUELEN (128)  --fd  -d DBITRATE  --listen-only  --down  -n
#
# restart-ms makes the controller recover from bus-off by itself, so a
# transient fault does not silence the vehicle until the next reboot. The
# settings do not survive a reboot: for that use systemd-networkd
# (packaging/networkd/80-can0.network). Needs root (CAP_NET_ADMIN).
set -euo pipefail

usage() { sed -n '2,20s/^# \{0,1\}//p' "$0"; }

iface=can0 bitrate=500000 sample=0.875 restart=100 txq=128
fd=0 dbitrate= listen=0 down=0 dry=0
while (($#)); do
	case $1 in
	-i) iface=$2; shift ;;
	-b) bitrate=$2; shift ;;
	-s) sample=$2; shift ;;
	-r) restart=$2; shift ;;
	-q) txq=$2; shift ;;
	-d) dbitrate=$2; shift ;;
	--fd) fd=1 ;;
	--listen-only) listen=1 ;;
	--down) down=1 ;;
	-n | --dry-run) dry=1 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "can-setup: unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done

die() { echo "can-setup: $*" >&2; exit 2; }
[[ $iface =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || die "bad interface name $iface"
[[ $bitrate =~ ^[0-9]+$ ]] && ((bitrate > 0 && bitrate <= 1000000)) || die "bitrate $bitrate not in 1..1000000"
case $bitrate in
10000 | 20000 | 50000 | 83333 | 100000 | 125000 | 250000 | 500000 | 800000 | 1000000) ;;
*) echo "can-setup: warning: $bitrate bit/s is not a usual CAN bitrate" >&2 ;;
esac
[[ $sample =~ ^0\.[0-9]+$ ]] || die "sample point $sample not in (0, 1), e.g. 0.875"
[[ $restart =~ ^[0-9]+$ ]] || die "restart-ms $restart not a number of milliseconds"
[[ $txq =~ ^[0-9]+$ ]] || die "txqueuelen $txq not a number"
if ((fd)); then
	[[ $dbitrate =~ ^[0-9]+$ ]] && ((dbitrate >= bitrate && dbitrate <= 8000000)) ||
		die "--fd needs -d DBITRATE between the bitrate and 8000000"
elif [[ -n $dbitrate ]]; then
	die "-d DBITRATE needs --fd"
fi

do_() {
	echo "+ $*"
	((dry)) || "$@"
}

if ((!dry)) && ! ip link show dev "$iface" >/dev/null 2>&1; then
	echo "can-setup: no interface $iface (driver not loaded? see dmesg)" >&2
	exit 1
fi

do_ ip link set dev "$iface" down
((down)) && exit 0

args=(type can bitrate "$bitrate" sample-point "$sample" restart-ms "$restart")
# Only name the modes that are switched on: a controller rejects a mode it
# does not support (EOPNOTSUPP) even when asked to turn it off.
((fd)) && args+=(dbitrate "$dbitrate" fd on)
((listen)) && args+=(listen-only on)
do_ ip link set dev "$iface" "${args[@]}"
do_ ip link set dev "$iface" txqueuelen "$txq"
do_ ip link set dev "$iface" up
((dry)) || ip -details -statistics link show dev "$iface"
