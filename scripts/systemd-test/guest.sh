#!/bin/bash
# guest.sh — runs inside the systemd-test guest (Debian 12, systemd as PID
# 1) from tcu-test.service, with the payload disk mounted at /mnt/payload.
# Prints one line per check to the serial console:
#   CHECK <name> PASS|FAIL <detail>
#   TIMING <name> <seconds>
# and SYSTEMD_TEST_STAGE1_END / SYSTEMD_TEST_END when done; then powers the
# guest off. Stage 1 (first boot) runs the package checks; stage 2 (the
# host boots the same disk again) measures boot -> READY and checks the
# service came back enabled and running.
set -uo pipefail
P=/mnt/payload
S=/var/lib/tcu-test
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive SYSTEMD_PAGER= SYSTEMD_COLORS=0
unit=tcu-agent.service
# As unattended upgrades do: keep an edited conffile without asking.
dpkg() { command dpkg --force-confdef --force-confold "$@"; }
# shellcheck disable=SC1091
. "$P/env" # THING, XFAIL

check() { # check NAME OK(0/1) DETAIL...
	local name=$1 ok=$2
	shift 2
	if [ "$ok" = 0 ]; then echo "CHECK $name PASS $*"; else echo "CHECK $name FAIL $*"; fi
}
timing() { echo "TIMING $1 $2"; }
prop() { systemctl show -p "$2" --value "$1"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }
# wait_for SECONDS CMD...: poll CMD every 0.5 s until it succeeds.
wait_for() {
	local t=$1 i
	shift
	for ((i = 0; i < t * 2; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.5
	done
	return 1
}
is_active() { [ "$(prop $unit ActiveState)" = active ]; }
restarted_since() { # restarted_since N: NRestarts > N and active
	[ "$(prop $unit NRestarts)" -gt "$1" ] && is_active
}
fresh_journal_mark() { journalctl -q --no-pager -n0 --show-cursor | sed -n 's/^-- cursor: //p'; }

stage=1
[ -e $S/stage2 ] && stage=2
echo # the firmware's last line has no newline

if [ $stage = 2 ]; then
	# Boot -> READY: systemd's monotonic clock starts at kernel boot;
	# a Type=notify unit becomes active at READY=1.
	wait_for 120 is_active
	ready=$(prop $unit ActiveEnterTimestampMonotonic)
	userspace=$(prop init.scope ActiveEnterTimestampMonotonic 2>/dev/null || echo 0)
	[ "$userspace" -gt 0 ] 2>/dev/null || userspace=$(systemctl show -p UserspaceTimestampMonotonic --value)
	timing boot_to_ready "$(awk -v r="$ready" 'BEGIN{printf "%.1f", r/1e6}')"
	timing userspace_to_ready "$(awk -v r="$ready" -v u="$userspace" 'BEGIN{printf "%.1f", (r-u)/1e6}')"
	check reboot-enabled-active "$([ "$(systemctl is-enabled $unit)" = enabled ] && is_active; echo $?)" \
		"enabled=$(systemctl is-enabled $unit) active=$(prop $unit ActiveState)"
	echo SYSTEMD_TEST_END
	systemctl poweroff
	exit 0
fi

echo "guest: stage 1, $(uname -r), systemd $(systemctl --version | head -1)"
t0=$(now)
systemctl is-system-running --wait >/dev/null 2>&1 || true
timing boot_userspace_settled "$(awk -v s="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN{print s}')"

# CAN: the vcan modules from the initramfs, vcan0 up.
while read -r m; do insmod "$S/canmods/$m.ko" 2>/dev/null; done <"$S/canmods/order"
ip link add dev vcan0 type vcan && ip link set vcan0 up
check vcan0-up "$(ip link show vcan0 >/dev/null 2>&1; echo $?)" "$(ip -br link show vcan0 2>&1)"

# The GNSS receiver: the PCI 16550 UART (the console is the ISA one).
gnss=
for d in /sys/class/tty/ttyS*; do
	case $(readlink -f "$d/device") in */pci*) gnss=/dev/${d##*/}; break ;; esac
done
check gnss-uart "$([ -n "$gnss" ] && [ -c "$gnss" ]; echo $?)" "device=${gnss:-none} group=$(stat -c %G "${gnss:-/nonexistent}" 2>/dev/null)"

# A broker (the dev cloud) and a simulated vehicle on vcan0, as units.
install -m755 "$P/tcu-devcloud" "$P/tcu-sim" /usr/local/bin/
systemd-run -q --unit=devcloud /usr/local/bin/tcu-devcloud serve --addr 127.0.0.1:18830
systemd-run -q --unit=sim /usr/local/bin/tcu-sim --socketcan vcan0 --scenario parked

# 1. Fresh install with the shipped configuration (no claim certificate,
# an unreachable broker): the agent must stay active, waiting for a claim,
# and never restart.
t=$(now)
out=$(dpkg -i "$P/cur.deb" 2>&1)
rc=$?
timing dpkg_install "$(elapsed "$t")"
check install "$rc" "dpkg -i rc=$rc"
[ $rc = 0 ] || echo "$out"
sleep 25
st=$(prop $unit ActiveState) nr=$(prop $unit NRestarts) code=$(prop $unit ExecMainStatus)
check fresh-install-no-claim-active "$([ "$st" = active ] && [ "$nr" = 0 ]; echo $?)" \
	"state=$st restarts=$nr main_status=$code enabled=$(systemctl is-enabled $unit)"
[ "$st" = active ] || journalctl -u $unit --no-pager -n 15 -o cat | sed 's/^/  journal: /'

# 2. Purge: unit gone, identity kept, no "not empty" warning.
mkdir -p /var/lib/tcu-agent && echo keep >/var/lib/tcu-agent/identity-marker
out=$(dpkg -P tcu-agent 2>&1)
rc=$?
warn=$(echo "$out" | grep -c "not empty" || true)
check purge "$([ $rc = 0 ] && [ "$warn" = 0 ] && [ ! -e /etc/tcu-agent ] && [ -e /var/lib/tcu-agent/identity-marker ] &&
	! systemctl cat $unit >/dev/null 2>&1; echo $?)" \
	"rc=$rc warnings=$warn etc=$([ -e /etc/tcu-agent ] && echo kept || echo gone) state=$([ -e /var/lib/tcu-agent/identity-marker ] && echo kept || echo gone)"
[ "$warn" = 0 ] || echo "$out" | sed 's/^/  dpkg: /'

# 3. The previous version with the test configuration, then the upgrade.
dpkg -i "$P/prev.deb" >/dev/null 2>&1
sed "s|@GNSS@|$gnss|" "$P/test.toml" >$S/test.toml
install -m644 $S/test.toml /etc/tcu-agent/tcu-agent.toml
systemctl restart $unit
wait_for 60 is_active
pid_old=$(prop $unit MainPID)
ver_old=$(tcu-agent version 2>&1)
t=$(now)
out=$(dpkg -i "$P/cur.deb" 2>&1)
rc=$?
timing dpkg_upgrade "$(elapsed "$t")"
[ $rc = 0 ] || echo "$out" | sed 's/^/  dpkg: /'
wait_for 60 is_active
pid_new=$(prop $unit MainPID)
ver_new=$(tcu-agent version 2>&1)
kept=$(cmp -s $S/test.toml /etc/tcu-agent/tcu-agent.toml && echo kept || echo replaced)
check upgrade "$([ $rc = 0 ] && is_active && [ "$pid_old" != "$pid_new" ] && [ "$ver_old" != "$ver_new" ] && [ $kept = kept ]; echo $?)" \
	"rc=$rc '$ver_old' -> '$ver_new' pid $pid_old -> $pid_new config $kept"

# 4. READY and telemetry.
check ready "$(is_active && [ "$(prop $unit Type)" = notify ]; echo $?)" "state=$(prop $unit ActiveState) status='$(prop $unit StatusText)'"
got=1
for _ in $(seq 1 60); do
	if journalctl -u devcloud --no-pager -o cat | grep -Eq "telemetry +$THING: [0-9]+ records"; then got=0; break; fi
	sleep 1
done
check telemetry "$got" "$(journalctl -u devcloud --no-pager -o cat | grep -E -m1 "telemetry +$THING: " | cut -c1-160)"
# Per-driver frame counters from the status JSON ("driver" comes before
# "frames" in each bus object).
bus_frames() {
	tcu-agent status --json 2>/dev/null | awk -v drv="$1" '
		/"driver":/ { gsub(/[",]/, "", $2); d = $2 }
		/"frames":/ && d == drv { gsub(/,/, "", $2); print $2; exit }'
}
both_buses() { [ "$(bus_frames body)" -gt 0 ] 2>/dev/null && [ "$(bus_frames gnss)" -gt 0 ] 2>/dev/null; }
wait_for 30 both_buses
frames=$(bus_frames body)
check can-vcan0 "$([ "${frames:-0}" -gt 0 ]; echo $?)" "body frames=${frames:-none}"
fixes=$(bus_frames gnss)
check gnss-uart-fixes "$([ "${fixes:-0}" -gt 0 ]; echo $?)" "gnss frames=${fixes:-none} on $gnss"

# 5. Sandbox: no permission denials, exposure.
denials=$(journalctl -u $unit --no-pager -o cat | grep -Eic 'permission denied|operation not permitted|EACCES|EPERM' || true)
check no-permission-denials "$([ "$denials" = 0 ]; echo $?)" "count=$denials"
[ "$denials" = 0 ] || journalctl -u $unit --no-pager -o cat | grep -Ei 'permission denied|operation not permitted|EACCES|EPERM' | head -5 | sed 's/^/  journal: /'
exposure=$(systemd-analyze security $unit 2>/dev/null | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
check systemd-analyze-security "$(awk -v e="${exposure:-99}" 'BEGIN{exit !(e <= 2.0)}'; echo $?)" "exposure=${exposure:-?}"

# 6. Watchdog: a stopped process stops its WATCHDOG=1; systemd kills it
# (WatchdogSignal=SIGABRT) and restarts it.
n=$(prop $unit NRestarts)
t=$(now)
kill -STOP "$(prop $unit MainPID)"
wait_for 120 restarted_since "$n"
rc=$?
timing watchdog_restart "$(elapsed "$t")"
check watchdog-restart "$rc" "NRestarts $n -> $(prop $unit NRestarts) in $(elapsed "$t") s, result=$(prop $unit Result)"

# 7. kill -9: restarted after RestartSec.
wait_for 60 is_active
n=$(prop $unit NRestarts)
t=$(now)
kill -9 "$(prop $unit MainPID)"
wait_for 60 restarted_since "$n"
rc=$?
timing kill9_restart "$(elapsed "$t")"
check kill9-restart "$rc" "NRestarts $n -> $(prop $unit NRestarts) in $(elapsed "$t") s"

# 8. A bad configuration: exit 78, no restart loop.
cp /etc/tcu-agent/tcu-agent.toml $S/good.toml
printf 'no_such_key = 1\n' >>/etc/tcu-agent/tcu-agent.toml
systemctl restart $unit >/dev/null 2>&1
sleep 15
st=$(prop $unit ActiveState) code=$(prop $unit ExecMainStatus) nr=$(prop $unit NRestarts)
check bad-config-78-no-restart "$([ "$code" = 78 ] && [ "$st" != active ] && [ "$st" != activating ] && [ "$nr" = 0 ]; echo $?)" \
	"state=$st main_status=$code restarts=$nr"
install -m644 $S/good.toml /etc/tcu-agent/tcu-agent.toml
systemctl reset-failed $unit 2>/dev/null
systemctl restart $unit
wait_for 60 is_active

# 9. Remove, then install again: enabled and running.
out=$(dpkg -r tcu-agent 2>&1)
rc=$?
st_removed=$(systemctl is-active $unit 2>/dev/null)
out2=$(dpkg -i "$P/cur.deb" 2>&1)
rc2=$?
wait_for 60 is_active
check remove-install-enabled-running "$([ $rc = 0 ] && [ $rc2 = 0 ] && [ "$st_removed" != active ] && [ "$(systemctl is-enabled $unit)" = enabled ] && is_active; echo $?)" \
	"dpkg -r rc=$rc, state $st_removed; dpkg -i rc=$rc2, $(systemctl is-enabled $unit), $(prop $unit ActiveState)"
[ $rc = 0 ] || echo "$out" | sed 's/^/  dpkg -r: /'
[ $rc2 = 0 ] || echo "$out2" | sed 's/^/  dpkg -i: /'

timing stage1_total "$(elapsed "$t0")"
# 10. The host boots the disk again: stage 2 measures boot -> READY.
touch $S/stage2
sync
echo SYSTEMD_TEST_STAGE1_END
systemctl poweroff
