#!/usr/bin/env bash
# powercut.sh — the buffer's power-cut test (docs/perf/powercut.md).
#
# A writer (buffer/powercut_test.go, build tag powercut) runs inside a qemu
# VM with its store on an ext4 file system on a virtio disk and prints an
# ACKED line after every Append/AppendBatch returned; a consumer in it
# leases and acks, printing ACKING lines first. After a random number of
# ACKED lines plus a random delay the host SIGKILLs qemu: the power cut.
# Then the VM boots again on the same disk image and the verifier checks
# that every record the host saw acknowledged (and not being acked) is
# there, once, intact, in order, and that new seqs are above all old ones.
#
# What the cut loses depends on POWERCUT_DISK:
#   cache (default)  the disk is served by nbdkit over a unix socket through
#                    its cache filter in writeback mode: writes stay in
#                    nbdkit's cache until the guest sends a FLUSH, and nbdkit
#                    is SIGKILLed with qemu. The cut loses the guest's page
#                    cache and block queues AND every write the disk had not
#                    been told to flush: a disk with a volatile write cache
#                    that loses all of it.
#   file             qemu opens the image itself (cache=writeback): writes
#                    qemu completed are in the host's page cache and survive
#                    qemu's death, so the cut loses only what the guest had
#                    not yet written to the disk (its page cache, its block
#                    queues). Weaker: a missing FLUSH goes unnoticed.
#
# Rounds per policy: POWERCUT_ROUNDS (default 3) for sync=always and
# sync=group, which must lose nothing; POWERCUT_NONE_ROUNDS (default 2)
# for sync=none, the negative control, whose losses are
# reported, not failed. POWERCUT_POLICIES overrides the policy list.
# POWERCUT_KEEP=1 keeps the work directory (logs, disk images).
# POWERCUT_VM_TIMEOUT (seconds, default 240) bounds each boot.
# POWERCUT_TEST_BIN=FILE uses a prebuilt static test binary (e.g. of
# another tree: CGO_ENABLED=0 go test -c -tags powercut ./buffer/).
# POWERCUT_MAX_LINES (default 320): the cut comes after 20..MAX ACKED lines
# (plus 0-3 s); raise it for cuts later in a larger store.
# POWERCUT_MOUNT=OPTS mounts the writer's ext4 with OPTS: "nobarrier"
# (fsync sends no FLUSH) shows that the cache model catches a missing flush.
# amd64 only. Installs e2fsprogs and nbdkit (and via prepare.sh qemu & co.)
# when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

rounds=${POWERCUT_ROUNDS:-3}
none_rounds=${POWERCUT_NONE_ROUNDS:-2}
read -r -a policies <<<"${POWERCUT_POLICIES:-always group none}"
max_lines=${POWERCUT_MAX_LINES:-320}
disk=${POWERCUT_DISK:-cache}
case $disk in cache | file) ;; *) echo "powercut: POWERCUT_DISK=$disk: want cache or file" >&2; exit 2 ;; esac

log() { echo "powercut: $*" >&2; }

missing=()
command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
[ "$disk" = file ] || command -v nbdkit >/dev/null || missing+=(nbdkit)
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
base=$("$root/scripts/vmtest/prepare.sh" amd64)
export VMEXEC_BASE_amd64=$base
mods=$("$root/scripts/vmtest/diskmods.sh" "$base")

work=$(mktemp -d "${TMPDIR:-/tmp}/powercut.XXXXXX")
if [ -n "${POWERCUT_KEEP:-}" ]; then
	log "keeping $work"
else
	trap 'rm -rf "$work"' EXIT
fi
if [ -n "${POWERCUT_TEST_BIN:-}" ]; then
	log "using $POWERCUT_TEST_BIN (disk model: $disk)"
	cp "$POWERCUT_TEST_BIN" "$work/buffer.test"
else
	log "building the test binary (disk model: $disk)"
	CGO_ENABLED=0 GOARCH=amd64 go test -c -tags powercut -o "$work/buffer.test" ./buffer/
fi

# vm LOG ENV... runs the test binary in the VM with ENV and the disk,
# streaming the payload's output to LOG; returns vmexec's exit code. A
# guest that hangs before the test starts (seen once in ~150 boots under
# TCG: nothing after the BIOS) is booted again, once; the disk is
# untouched then.
vm() {
	local out=$1 try rc
	shift
	for try in 1 2; do
		rc=0
		(cd "$root/buffer" && env VMEXEC_DISK="$img" VMEXEC_TIMEOUT="${POWERCUT_VM_TIMEOUT:-240}" "$@" \
			"$root/scripts/vmexec" "$work/buffer.test" -test.run '^TestPowerCut$') >"$out" 2>"$out.err" || rc=$?
		if [ $rc = 125 ] && [ $try = 1 ] && ! grep -q '^GUEST ' "$out"; then
			log "the guest hung before the test started; booting again"
			tail -n 5 "$out.err" >&2
			continue
		fi
		return $rc
	done
}

# start_disk starts nbdkit serving $img through its writeback cache (see
# above) on a unix socket; sets nbd_pid.
start_disk() {
	rm -f "$work/nbd.sock"
	TMPDIR=$work nbdkit --foreground --unix "$work/nbd.sock" --filter=cache \
		file file="$img" cache=writeback >"$work/nbdkit.log" 2>&1 &
	nbd_pid=$!
	disown "$nbd_pid" # no "Killed" job notice: the SIGKILL is the point
	local i
	for ((i = 0; i < 100; i++)); do
		[ -S "$work/nbd.sock" ] && return 0
		sleep 0.1
	done
	log "nbdkit did not start:"
	cat "$work/nbdkit.log" >&2
	return 1
}

# stop_disk SIGKILLs nbdkit (normally vmexec already did, just before
# qemu) and waits until it is gone.
stop_disk() {
	local i
	kill -KILL "$nbd_pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$nbd_pid" 2>/dev/null || return 0
		sleep 0.1
	done
	log "nbdkit $nbd_pid did not die"
	return 1
}

# cut_writer POL R RUN LOG: boots the writer on $img and cuts it after a random
# number of ACKED lines plus a random delay; sets cut (a description).
cut_writer() {
	local pol=$1 r=$2 run=$3 wlog=$4 lines delay rc=0
	lines=$((20 + RANDOM % (max_lines - 19)))
	delay=$(printf '%d.%03d' $((RANDOM % 3)) $((RANDOM % 1000)))
	cut="$lines lines + ${delay}s"
	local wdisk=(VMEXEC_DISK="$img")
	if [ "$disk" = cache ]; then
		start_disk || return 1
		wdisk=(VMEXEC_DISK="nbd+unix:///?socket=$work/nbd.sock" VMEXEC_KILL_FIRST="$nbd_pid")
	fi
	vm "$wlog" VMTEST_POWERCUT=write VMTEST_POWERCUT_SYNC="$pol" VMTEST_POWERCUT_RUN="$run" \
		VMTEST_POWERCUT_MOUNT="${POWERCUT_MOUNT:-}" \
		VMEXEC_CPIO="$mods" VMEXEC_KILL_MATCH='^ACKED ' VMEXEC_KILL_AFTER="$lines" \
		VMEXEC_KILL_DELAY="$delay" "${wdisk[@]}" || rc=$?
	[ "$disk" = file ] || stop_disk
	if [ $rc != 137 ]; then
		log "sync=$pol round $r: the writer was not cut (vmexec exit $rc):"
		tail -n 30 "$wlog" "$wlog.err" >&2
		summary+=("sync=$pol round $r: writer not cut (exit $rc)")
		return 1
	fi
}

# pack LOG: the ACKED/ACKING lines the host saw (complete ones: the cut
# may tear the last) become /powercut/acked in $work/acked.cpio, an extra
# initrd archive for the verifier; sets acked, nlines and first (seq).
pack() {
	local f=$work/acked/powercut/acked
	mkdir -p "$work/acked/powercut"
	grep -E '^(ACKED [0-9]+ [0-9]+ [0-9]+ [0-9]+|ACKING [0-9]+ [0-9]+) end$' "$1" >"$f" || true
	(cd "$work/acked" && find . | cpio -o -H newc -R 0:0 --quiet) >"$work/acked.cpio"
	nlines=$(grep -c '^ACKED' "$f" || true)
	acked=$(awk '$1 == "ACKED" { n += $5 } END { print n + 0 }' "$f")
	first=$(awk '$1 == "ACKED" { print $3 }' "$f" | sort -n | head -n 1) # awk's numbers would round it
}

# round POL R: one cut and one verification on $img; appends to summary
# and updates prev_max (the highest seq seen so far on this disk).
round() {
	local pol=$1 r=$2 run t0 t1 t2 rc=0 cut acked nlines first maxseq verdict stats row
	local wlog=$work/$pol-$r.write vlog=$work/$pol-$r.verify
	run=$(((RANDOM << 30) | (RANDOM << 15) | RANDOM))
	t0=$(date +%s.%N)
	cut_writer "$pol" "$r" "$run" "$wlog" || return 1
	t1=$(date +%s.%N)
	pack "$wlog"
	vm "$vlog" VMTEST_POWERCUT=verify VMTEST_POWERCUT_SYNC="$pol" VMTEST_POWERCUT_RUN="$run" \
		VMTEST_POWERCUT_ACKED=/powercut/acked VMEXEC_CPIO="$mods $work/acked.cpio" || rc=$?
	t2=$(date +%s.%N)
	verdict=$(grep -E '^POWERCUT ' "$vlog" | tail -n 1 || true)
	stats=$(grep -E '^STATS ' "$wlog" | tail -n 1 | sed 's/^STATS //' || true)
	maxseq=$(sed -n 's/.* max_seq=\([0-9]*\).*/\1/p' <<<"$verdict")
	row=$(printf 'sync=%-6s round %d: acked %6d records in %4d lines, cut after %s (last writer stats: %s); write %5.1fs verify %5.1fs: %s' \
		"$pol" "$r" "$acked" "$nlines" "$cut" "${stats:-none}" \
		"$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
		"$(awk -v a="$t1" -v b="$t2" 'BEGIN { print b - a }')" "${verdict:-no verdict (exit $rc)}")
	summary+=("$row")
	log "$row"
	if [ -n "$first" ] && [ "$first" -le "$prev_max" ]; then
		log "sync=$pol round $r: seq $first reused (seqs up to $prev_max were seen before)"
		return 1
	fi
	prev_max=${maxseq:-$prev_max}
	if [ $rc != 0 ] || [ -z "$verdict" ]; then
		tail -n 40 "$vlog" "$vlog.err" >&2
		return 1
	fi
}

fail=0
summary=()
for pol in "${policies[@]}"; do
	n=$rounds
	[ "$pol" = none ] && n=$none_rounds
	img=$work/disk-$pol.img
	truncate -s 512M "$img"
	mkfs.ext4 -q -F "$img"
	prev_max=0
	for ((r = 1; r <= n; r++)); do
		round "$pol" "$r" || fail=1
	done
done
printf '%s\n' "${summary[@]}" >&2
if [ $fail != 0 ]; then
	log "FAILED"
	exit 1
fi
log "passed: no acknowledged record lost under sync=always/group"
