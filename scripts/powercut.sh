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
# What the cut loses depends on POWERCUT_DISK (default replay):
#   cache            the disk is served by nbdkit over a unix socket through
#                    its cache filter in writeback mode: writes stay in
#                    nbdkit's cache until the guest sends a FLUSH, and nbdkit
#                    is SIGKILLed with qemu. The cut loses the guest's page
#                    cache and block queues AND every write the disk had not
#                    been told to flush: a disk with a volatile write cache
#                    that loses all of it.
#   hostile          the disk is scripts/hostiledisk (our NBD server): writes
#                    since the last FLUSH stay in its memory; vmexec sends it
#                    SIGUSR1 (the cut) just before SIGKILLing qemu, and it
#                    persists of them what POWERCUT_MODE says: nothing, a
#                    random prefix, a random subset in random order, a subset
#                    and one torn 4 KiB page, mixed (one of those four per
#                    cut, default) or none-lost (all: the control). Seeded
#                    (POWERCUT_SEED, else random); the seed and what it did
#                    are in the round's row.
#   replay           the same server records every write and flush of one
#                    writer run (nothing is cut live); hostiledisk replay
#                    then builds POWERCUT_CUTS (default 16) disks, each a cut
#                    at a random flush boundary of that run treated per
#                    POWERCUT_MODE, with the ACKED lines the host had seen
#                    before that flush completed (stamped on the same
#                    clock), and verifier boots check POWERCUT_PER_BOOT
#                    (default 16) of them per boot. POWERCUT_ROUNDS
#                    (default 1) writer runs per policy, each cut after
#                    POWERCUT_MIN_LINES..POWERCUT_MAX_LINES (200..800) ACKED
#                    lines. POWERCUT_RESULTS=FILE appends a row per cut;
#                    POWERCUT_FAILDIR=DIR keeps each failed cut's image. Why that is sound: docs/perf/powercut.md.
#                    A cut the guest's kernel will not mount (MOUNTFAIL) is
#                    logged as unmountable with its kernel log ($work/
#                    unmountable.txt, POWERCUT_RESULTS.unmountable), then
#                    e2fsck -fy (f2fs: fsck.f2fs -f -y) repairs a copy and
#                    another verifier boot checks it: PASS-AFTER-FSCK, or
#                    FAIL. POWERCUT_PENDING=N cuts only where exactly N
#                    writes are pending (1 with ext4-journal: mostly a lone
#                    jbd2 commit block).
#                    The live modes (cache, hostile, file) have the same
#                    fallback on the live disk itself, as systemd-fsck on a
#                    TCU (the pre-fsck image is kept as a copy), and write
#                    the same rows to POWERCUT_RESULTS. POWERCUT_LIVE_BREAK=gdt
#                    (ext4 only, a fault knob) breaks group 0's descriptor
#                    checksum after each live cut, so the verifier cannot
#                    mount and the fallback runs every round.
#   file             qemu opens the image itself (cache=writeback): writes
#                    qemu completed are in the host's page cache and survive
#                    qemu's death, so the cut loses only what the guest had
#                    not yet written to the disk (its page cache, its block
#                    queues). Weaker: a missing FLUSH goes unnoticed.
#
# Rounds per policy: POWERCUT_ROUNDS (default 3; replay 1) for sync=always and
# sync=group, which must lose nothing; POWERCUT_NONE_ROUNDS (default 2; replay 1)
# for sync=none, the negative control, whose losses are
# reported, not failed. POWERCUT_POLICIES overrides the policy list.
# POWERCUT_KEEP=1 keeps the work directory (logs, disk images).
# POWERCUT_VM_TIMEOUT (seconds, default 240) bounds each boot.
# POWERCUT_TEST_BIN=FILE uses a prebuilt static test binary (e.g. of
# another tree: CGO_ENABLED=0 go test -c -tags powercut ./buffer/).
# POWERCUT_MIN_LINES/POWERCUT_MAX_LINES (default 20/320; replay 200/800):
# the cut comes after MIN..MAX ACKED lines (plus 0-3 s); raise them for
# cuts later in a larger store.
# POWERCUT_MOUNT=OPTS mounts the writer's file system with OPTS: "nobarrier"
# (ext4: fsync sends no FLUSH) shows that the cache model catches a missing
# flush; with f2fs e.g. "fsync_mode=strict".
# POWERCUT_FS: ext4 (default: data=ordered), ext4-journal (data=journal,
# set as the image's default mount option with tune2fs), f2fs (mkfs.f2fs
# defaults; the guest loads f2fs.ko from diskmods-f2fs.cpio) or f2fs-csum
# (mkfs.f2fs -O extra_attr,inode_checksum,sb_checksum: checksummed inodes).
# POWERCUT_ARCH: amd64 (default) or arm64 (qemu-system-aarch64 under TCG).
# POWERCUT_IDLE=DURATION (a Go duration, e.g. 5ms): the writer's store
# closes after DURATION unused (buffer Options.IdleClose) and its writers
# pause 0..3x DURATION between appends, so that it closes and reopens all
# the time and cuts land in the closes and reopens; the rows get idle=D
# after fs=, the replay summary the writer's reopen count and how many
# cuts fell in a close or a reopen (from the writer's IDLE lines). Unset:
# no idle close (the queue's default 1 min is never reached).
# Installs e2fsprogs, f2fs-tools (f2fs only) and nbdkit (cache only) (and
# via prepare.sh qemu & co.) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

disk=${POWERCUT_DISK:-replay}
if [ "$disk" = replay ]; then # one writer run makes POWERCUT_CUTS cuts
	rounds=${POWERCUT_ROUNDS:-1}
	none_rounds=${POWERCUT_NONE_ROUNDS:-1}
	min_lines=${POWERCUT_MIN_LINES:-200}
	max_lines=${POWERCUT_MAX_LINES:-800}
else
	rounds=${POWERCUT_ROUNDS:-3}
	none_rounds=${POWERCUT_NONE_ROUNDS:-2}
	min_lines=${POWERCUT_MIN_LINES:-20}
	max_lines=${POWERCUT_MAX_LINES:-320}
fi
read -r -a policies <<<"${POWERCUT_POLICIES:-always group none}"
case $disk in cache | file | hostile | replay) ;; *) echo "powercut: POWERCUT_DISK=$disk: want cache, file, hostile or replay" >&2; exit 2 ;; esac
hmode=${POWERCUT_MODE:-mixed}
case $hmode in nothing | prefix | subset | torn | mixed | none-lost) ;; *) echo "powercut: POWERCUT_MODE=$hmode: want nothing, prefix, subset, torn, mixed or none-lost" >&2; exit 2 ;; esac
fs=${POWERCUT_FS:-ext4}
case $fs in ext4 | ext4-journal) fstype=ext4 fsck_name="e2fsck -fy" ;; f2fs | f2fs-csum) fstype=f2fs fsck_name="fsck.f2fs -f -y" ;; *) echo "powercut: POWERCUT_FS=$fs: want ext4, ext4-journal, f2fs or f2fs-csum" >&2; exit 2 ;; esac
# The rows' fs= field: the file system, and the writer's mount options.
fsrow=$fs${POWERCUT_MOUNT:++$POWERCUT_MOUNT}
fsrow=${fsrow// /}
idle=${POWERCUT_IDLE:-}
if [ -n "$idle" ]; then
	[[ $idle =~ ^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$ ]] || { echo "powercut: POWERCUT_IDLE=$idle: want a Go duration (e.g. 5ms)" >&2; exit 2; }
	fsrow+=" idle=$idle" # every row's label: fs=... idle=D
fi
live_break=${POWERCUT_LIVE_BREAK:-}
case $live_break in "" | gdt) ;; *) echo "powercut: POWERCUT_LIVE_BREAK=$live_break: want gdt or nothing" >&2; exit 2 ;; esac
[ -z "$live_break" ] || [ "$fstype" = ext4 ] || { echo "powercut: POWERCUT_LIVE_BREAK=gdt needs an ext4 file system" >&2; exit 2; }
arch=${POWERCUT_ARCH:-amd64}
case $arch in amd64 | arm64) ;; *) echo "powercut: POWERCUT_ARCH=$arch: want amd64 or arm64" >&2; exit 2 ;; esac
ncuts=${POWERCUT_CUTS:-16}
per_boot=${POWERCUT_PER_BOOT:-16}
seed=${POWERCUT_SEED:-$(((RANDOM << 30) | (RANDOM << 15) | RANDOM | 1))}

log() { echo "powercut: $*" >&2; }

missing=()
command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
[ "$fstype" != f2fs ] || command -v mkfs.f2fs >/dev/null || missing+=(f2fs-tools)
[ "$disk" != cache ] || command -v nbdkit >/dev/null || missing+=(nbdkit)
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
base=$("$root/scripts/vmtest/prepare.sh" "$arch")
export "VMEXEC_BASE_$arch=$base"
mods=$("$root/scripts/vmtest/diskmods.sh" "$base" "${fstype/#ext4/}")

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
	log "building the test binary (disk model: $disk, fs: $fs, arch: $arch)"
	CGO_ENABLED=0 GOARCH=$arch go test -c -tags powercut -o "$work/buffer.test" ./buffer/
fi
case $disk in hostile | replay)
	go build -o "$work/hostiledisk" ./scripts/hostiledisk/
	log "hostile disk: mode=$hmode seed=$seed"
	;;
esac

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
		if [ -n "${stamp:-}" ]; then # replay: each console line with its arrival time
			set +e
			(cd "$root/buffer" && env VMEXEC_DISK="$img" VMTEST_POWERCUT_FS="$fstype" VMEXEC_TIMEOUT="${POWERCUT_VM_TIMEOUT:-240}" "$@" \
				"$root/scripts/vmexec" "$work/buffer.test" -test.run '^TestPowerCut$') 2>"$out.err" |
				"$work/hostiledisk" stamp -o "$out.stamp" >"$out"
			rc=${PIPESTATUS[0]}
			set -e
		else
			(cd "$root/buffer" && env VMEXEC_DISK="$img" VMTEST_POWERCUT_FS="$fstype" VMEXEC_TIMEOUT="${POWERCUT_VM_TIMEOUT:-240}" "$@" \
				"$root/scripts/vmexec" "$work/buffer.test" -test.run '^TestPowerCut$') >"$out" 2>"$out.err" || rc=$?
		fi
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
	if [ "$disk" = cache ]; then
		TMPDIR=$work nbdkit --foreground --unix "$work/nbd.sock" --filter=cache \
			file file="$img" cache=writeback >"$work/nbdkit.log" 2>&1 &
	else # hostile, replay: our server; "$@" are its extra flags
		"$work/hostiledisk" serve -socket "$work/nbd.sock" -image "$img" "$@" >"$work/nbdkit.log" 2>&1 &
	fi
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
# qemu) and waits until it is gone; hostiledisk gets 30 s to carry out
# its cut (vmexec sent SIGUSR1) before that.
stop_disk() {
	local i
	if [ "$disk" != cache ]; then
		for ((i = 0; i < 300; i++)); do
			kill -0 "$nbd_pid" 2>/dev/null || return 0
			sleep 0.1
		done
		log "hostiledisk $nbd_pid did not finish its cut"
	fi
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
	lines=$((min_lines + RANDOM % (max_lines - min_lines + 1)))
	delay=$(printf '%d.%03d' $((RANDOM % 3)) $((RANDOM % 1000)))
	cut="$lines lines + ${delay}s"
	local wdisk=(VMEXEC_DISK="$img")
	case $disk in
	cache)
		start_disk || return 1
		wdisk=(VMEXEC_DISK="nbd+unix:///?socket=$work/nbd.sock" VMEXEC_KILL_FIRST="$nbd_pid")
		;;
	hostile | replay)
		local flags=(-mode "$hmode" -seed "$rseed" -stats "$wlog.disk.json")
		[ "$disk" = hostile ] || flags=(-mode none-lost -seed "$rseed" -log "$work/writes.log" -stats "$wlog.disk.json")
		start_disk "${flags[@]}" || return 1
		# SIGUSR1: the server cuts at the next flush with writes pending
		# (or within 2 s) and exits; vmexec waits for that, then kills qemu.
		wdisk=(VMEXEC_DISK="nbd+unix:///?socket=$work/nbd.sock" VMEXEC_KILL_FIRST="$nbd_pid"
			VMEXEC_KILL_FIRST_SIGNAL=USR1 VMEXEC_KILL_FIRST_WAIT=10)
		;;
	esac
	vm "$wlog" VMTEST_POWERCUT=write VMTEST_POWERCUT_SYNC="$pol" VMTEST_POWERCUT_RUN="$run" \
		VMTEST_POWERCUT_MOUNT="${POWERCUT_MOUNT:-}" VMTEST_POWERCUT_IDLE="$idle" \
		VMEXEC_CPIO="$mods" VMEXEC_KILL_MATCH='^ACKED ' VMEXEC_KILL_AFTER="$lines" \
		VMEXEC_KILL_DELAY="$delay" "${wdisk[@]}" || rc=$?
	[ "$disk" = file ] || stop_disk
	if [ "$disk" = hostile ] || [ "$disk" = replay ]; then
		cut="$cut; $(sed -n 's/^hostiledisk: cut by [^:]*: //p' "$work/nbdkit.log")"
		cp "$work/nbdkit.log" "$wlog.disk"
	fi
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
	next_seed
	t0=$(date +%s.%N)
	cut_writer "$pol" "$r" "$run" "$wlog" || return 1
	t1=$(date +%s.%N)
	pack "$wlog"
	[ -z "$live_break" ] || break_gdt "$img"
	vm "$vlog" VMTEST_POWERCUT=verify VMTEST_POWERCUT_SYNC="$pol" VMTEST_POWERCUT_RUN="$run" \
		VMTEST_POWERCUT_ACKED=/powercut/acked VMEXEC_CPIO="$mods $work/acked.cpio" || rc=$?
	verdict=$(grep -E '^POWERCUT ' "$vlog" | tail -n 1 || true)
	local mf extra="" frc
	mf=$(grep -E '^MOUNTFAIL ' "$vlog" | tail -n 1 || true)
	if [ -z "$verdict" ] && [ -n "$mf" ]; then
		# The disk does not mount. As systemd-fsck on a TCU (fsck -y when
		# the mount fails): record it, repair the live disk itself (the
		# next round continues on it; the image before the repair is kept
		# as $pol-$r.unmountable.img) and verify again, with the same checks.
		grep -E '^KERNEL ' "$vlog" | sed 's/^KERNEL //' >"$vlog.kernel" || true
		cp --sparse=always "$img" "$work/$pol-$r.unmountable.img"
		fsck_img "$img" "$vlog.fsck"
		extra="unmountable=$(sed -n 's/.* errno=\([^ ]*\).*/\1/p' <<<"$mf") fsck_rc=$frc "
		{
			echo "unmountable: arch=$arch fs=$fsrow sync=$pol round=$r run_seed=$rseed live=$disk ${live_break:+break=$live_break }$cut"
			echo "  $mf"
			sed 's/^/  kernel: /' "$vlog.kernel"
			echo "  $fsck_name exit $frc:"
			sed 's/^/  fsck: /' "$vlog.fsck"
		} >"$vlog.unmountable"
		cat "$vlog.unmountable" >>"$work/unmountable.txt"
		[ -z "${POWERCUT_RESULTS:-}" ] || cat "$vlog.unmountable" >>"$POWERCUT_RESULTS.unmountable"
		log "sync=$pol round $r: the disk does not mount ($mf); $fsck_name exit $frc; verifying the repaired disk"
		rc=0
		vm "$vlog.after-fsck" VMTEST_POWERCUT=verify VMTEST_POWERCUT_SYNC="$pol" VMTEST_POWERCUT_RUN="$run" \
			VMTEST_POWERCUT_ACKED=/powercut/acked VMEXEC_CPIO="$mods $work/acked.cpio" || rc=$?
		verdict=$(grep -E '^POWERCUT ' "$vlog.after-fsck" | tail -n 1 || true)
		case $verdict in
		"POWERCUT PASS "*) verdict="POWERCUT PASS-AFTER-FSCK ${verdict#POWERCUT PASS }" ;;
		"POWERCUT LOSS "*) verdict="POWERCUT LOSS-AFTER-FSCK ${verdict#POWERCUT LOSS }" ;;
		"") mf=$(grep -E '^MOUNTFAIL ' "$vlog.after-fsck" | tail -n 1 || true)
			[ -z "$mf" ] || verdict="POWERCUT FAIL unmountable even after $fsck_name: $mf" ;;
		esac
		vlog=$vlog.after-fsck
	fi
	t2=$(date +%s.%N)
	stats=$(grep -E '^STATS ' "$wlog" | tail -n 1 | sed 's/^STATS //' || true)
	maxseq=$(sed -n 's/.* max_seq=\([0-9]*\).*/\1/p' <<<"$verdict")
	row=$(printf 'sync=%-6s round %d: acked %6d records in %4d lines, cut after %s (last writer stats: %s); write %5.1fs verify %5.1fs: %s' \
		"$pol" "$r" "$acked" "$nlines" "$cut" "${stats:-none}" \
		"$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
		"$(awk -v a="$t1" -v b="$t2" 'BEGIN { print b - a }')" "${verdict:-no verdict (exit $rc)}")
	summary+=("$row")
	log "$row"
	# The same row as a replayed cut's, for tally.sh (mode= is the disk
	# model for cache and file).
	local crow
	crow="arch=$arch fs=$fsrow sync=$pol round=$r run_seed=$rseed live=$disk ${live_break:+break=$live_break }"
	case $disk in hostile) crow+="${cut#*; }" ;; *) crow+="mode=$disk $cut" ;; esac
	crow+=" acked_lines=$nlines $extra: ${verdict:-POWERCUT FAIL no verdict (verifier exit $rc)}"
	crow=${crow/ : POWERCUT/: POWERCUT}
	echo "$crow" >>"$work/cuts.txt"
	[ -z "${POWERCUT_RESULTS:-}" ] || echo "$crow" >>"$POWERCUT_RESULTS"
	case $verdict in "POWERCUT PASS"* | "POWERCUT LOSS"*) ;; *)
		if [ -n "${POWERCUT_FAILDIR:-}" ]; then # keep the disk for a post-mortem
			mkdir -p "$POWERCUT_FAILDIR"
			cp --sparse=always "$img" "$POWERCUT_FAILDIR/$pol-$r.img"
			[ ! -e "$work/$pol-$r.unmountable.img" ] || cp --sparse=always "$work/$pol-$r.unmountable.img" "$POWERCUT_FAILDIR/$pol-$r.unmountable.img"
			cp "$work/acked/powercut/acked" "$POWERCUT_FAILDIR/$pol-$r.acked"
			echo "$crow" >"$POWERCUT_FAILDIR/$pol-$r.row"
		fi
		;;
	esac
	[ -n "${POWERCUT_KEEP:-}" ] || rm -f "$work/$pol-$r.unmountable.img"
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

# next_seed sets rseed, the seed of the next round, derived from $seed
# (printed in the round's row, so one cut can be replayed).
nseed=0
next_seed() {
	nseed=$((nseed + 1))
	rseed=$(((seed + nseed * 2654435761) & 0x7fffffffffffffff))
}

# mkdisk IMG: a fresh 512 MiB image with the file system $fs.
mkdisk() {
	rm -f "$1"
	truncate -s 512M "$1"
	case $fs in
	f2fs)
		mkfs.f2fs -q -f "$1" >/dev/null
		return
		;;
	f2fs-csum)
		mkfs.f2fs -q -f -O extra_attr,inode_checksum,sb_checksum "$1" >/dev/null
		return
		;;
	esac
	mkfs.ext4 -q -F "$1"
	[ "$fs" != ext4-journal ] || tune2fs -o journal_data "$1" >/dev/null
}

# fsck_img IMG OUT: what systemd-fsck does when the mount fails (fsck -y):
# e2fsck -fy, or fsck.f2fs -f -y, on IMG, output to OUT; sets frc (its
# exit code: e2fsck 1 = errors corrected).
fsck_img() {
	frc=0
	if [ "$fstype" = f2fs ]; then
		fsck.f2fs -f -y "$1" >"$2" 2>&1 || frc=$?
	else
		e2fsck -fy "$1" >"$2" 2>&1 || frc=$?
	fi
}

# break_gdt IMG: the fault knob POWERCUT_LIVE_BREAK=gdt: flips the
# checksum of ext4 block group 0's descriptor (the first descriptor in the
# block after the superblock's), which the kernel checks before it loads
# the journal: the mount fails with EFSCORRUPTED ("group descriptors
# corrupted!") and e2fsck -fy rewrites the checksum.
break_gdt() {
	local bs gdt
	bs=$(dumpe2fs -h "$1" 2>/dev/null | sed -n 's/^Block size: *//p')
	gdt=$((bs == 1024 ? 2048 : bs)) # the descriptors follow the superblock's block
	# bg_checksum is the 16-bit field at offset 0x1e of the descriptor.
	local sum
	sum=$(($(od -An -tu2 -j $((gdt + 30)) -N 2 "$1") ^ 0xffff)) # little-endian, as od reads it here
	# shellcheck disable=SC2059 # the format is the two bytes, escaped
	printf "\\x$(printf %02x $((sum & 0xff)))\\x$(printf %02x $((sum >> 8)))" |
		dd of="$1" bs=1 seek=$((gdt + 30)) conv=notrunc status=none
}

# verify_boot OUT SUFFIX NAME...: one verifier boot (log OUT) with the
# cuts NAME..., images $dir/NAME$SUFFIX.img, as /dev/vda, /dev/vdb, ...;
# sets vrc (vmexec's exit code). Uses replay_round's locals.
verify_boot() {
	local out=$1 suf=$2 k dev imgs=()
	shift 2
	local cuts=("$@")
	rm -rf "$work/vcut" && mkdir -p "$work/vcut/powercut"
	for ((k = 0; k < ${#cuts[@]}; k++)); do
		dev=/dev/vd$(printf "\\x$(printf %x $((97 + k)))")
		cp "$dir/${cuts[k]}.acked" "$work/vcut/powercut/"
		echo "$dev /powercut/${cuts[k]}.acked ${cuts[k]}" >>"$work/vcut/powercut/cuts"
		imgs+=("$dir/${cuts[k]}$suf.img")
	done
	(cd "$work/vcut" && find . | cpio -o -H newc -R 0:0 --quiet) >"$work/vcut.cpio"
	vrc=0
	img="${imgs[*]}" vm "$out" VMTEST_POWERCUT=verify VMTEST_POWERCUT_SYNC="$pol" VMTEST_POWERCUT_RUN="$run" \
		VMTEST_POWERCUT_CUTS=/powercut/cuts VMEXEC_CPIO="$mods $work/vcut.cpio" || vrc=$?
	if [ $vrc != 0 ]; then
		tail -n 40 "$out" "$out.err" >&2
	fi
}

# cut_row NAME VERDICT VLOG EXTRA: the result row of one cut (EXTRA, e.g.
# "unmountable=EFSCORRUPTED fsck_rc=1 ", before the verdict), appended to
# $work/cuts.txt and POWERCUT_RESULTS; counts it in replay_round's
# npass/nfsck/nloss/nfail and keeps a failed cut in POWERCUT_FAILDIR.
cut_row() {
	local name=$1 verdict=$2 vlog=$3 extra=$4 row
	row="arch=$arch fs=$fsrow sync=$pol round=$r run_seed=$rseed $(grep " $name " "$dir/manifest" | sed 's/^CUT //') $extra: ${verdict:-POWERCUT FAIL no verdict (verifier exit $vrc)}"
	row=${row/ : POWERCUT/: POWERCUT}
	echo "$row" >>"$work/cuts.txt"
	[ -z "${POWERCUT_RESULTS:-}" ] || echo "$row" >>"$POWERCUT_RESULTS"
	case $verdict in
	"POWERCUT PASS "*) npass=$((npass + 1)) ;;
	"POWERCUT PASS-AFTER-FSCK "*) nfsck=$((nfsck + 1)) ;;
	"POWERCUT LOSS "* | "POWERCUT LOSS-AFTER-FSCK "*) nloss=$((nloss + 1)) ;;
	*)
		nfail=$((nfail + 1))
		log "FAIL: $row"
		if [ -n "${POWERCUT_FAILDIR:-}" ]; then # keep the cut for a post-mortem
			mkdir -p "$POWERCUT_FAILDIR"
			# The verifier mounted (f2fs: rolled forward) and wrote to
			# this image; the cut itself is rebuilt at the round's end.
			cp --sparse=always "$dir/$name.img" "$POWERCUT_FAILDIR/$pol-$r-$name.after-verify.img"
			failed+=("$name")
			cp "$dir/$name.acked" "$POWERCUT_FAILDIR/$pol-$r-$name.acked"
			[ ! -e "$dir/$name.fsck.img" ] || cp --sparse=always "$dir/$name.fsck.img" "$POWERCUT_FAILDIR/$pol-$r-$name.fsck.img"
			echo "$row" >"$POWERCUT_FAILDIR/$pol-$r-$name.row"
			{ # its lines and its subtest's failure messages
				grep -E "^(KERNEL|VERIFY|POWERCUT [A-Z-]+|MOUNTFAIL) cut=$name " "$vlog"
				awk -v n="--- FAIL: TestPowerCut/$name " 'index($0, n) { p = 1; print; next } p && /^    --- |^(FAIL|PASS|ok)/ { p = 0 } p' "$vlog"
			} >"$POWERCUT_FAILDIR/$pol-$r-$name.verify" || true
		fi
		;;
	esac
}

# idle_at POL R WLOG: with POWERCUT_IDLE, where each cut of the round
# fell relative to the writer's idle closes and reopens: its IDLE lines
# (buffer/powercut_test.go) were stamped on the host's clock like the
# ACKED lines, so a second replay of the same cut points with the IDLE
# lines in place of the ACKED ones counts, per cut, the IDLE lines stamped
# before the cut's flush completed (acked_lines=N; the ACKED lines are
# counted too): the last line says where the cut fell: closing (after
# "close-begin": Badger flushing the memtable, writing the MANIFEST,
# removing the WAL), closed (after "closed": the store closed, a reopen
# under way or about to start), opening (after "open-tables", before
# "open-done"), reopened (after "open-done", before the next ACKED line:
# the value log opening, the first commit into the new WAL and value
# log) or open. The console lags the guest by a little (the lines are
# stamped when the host reads them), so the boundaries are approximate. Adds
# idle_at=STATE to the cut's manifest line (and so its row) and sets
# idle_sum ("N closes, N reopens; cuts: N closing, ...").
idle_at() {
	local pol=$1 r=$2 wlog=$3 pts opens closes
	awk '$2 == "IDLE" || $2 == "ACKED" { k++; print $1, "ACKED 0", k, "0 1 end"; print ($2 == "IDLE" ? $3 : "acked") >"/dev/stderr" }' "$wlog.stamp" >"$dir/idle.stamp" 2>"$dir/idle.kinds"
	pts=$(awk '{ sub(/^cut-0*/, "", $2); print ($2 == "" ? 0 : $2) }' "$dir/manifest" | paste -sd,)
	mkdir -p "$dir/idlecls"
	"$work/hostiledisk" replay -log "$work/writes.log" -base "$work/base.img" -console "$dir/idle.stamp" -out "$dir/idlecls" \
		-points "$pts" -mode "$hmode" -seed "$rseed" >"$dir/idle.manifest" 2>"$dir/idle.err" || {
		log "sync=$pol round $r: idle replay failed: $(cat "$dir/idle.err")"
		rm -rf "$dir/idlecls"
		return 0
	}
	rm -rf "$dir/idlecls"
	awk 'FILENAME == ARGV[1] { kind[FNR] = $1; next }
		FILENAME == ARGV[2] { for (i = 1; i <= NF; i++) if ($i ~ /^acked_lines=/) { split(substr($i, 13), a, "/"); n[$2] = a[1] + 0 }; next }
		{ s = "open"; k = kind[n[$2]]
		  if (k == "close-begin") s = "closing"; else if (k == "closed") s = "closed"; else if (k == "open-tables") s = "opening"; else if (k == "open-done") s = "reopened"
		  $0 = $0 " idle_at=" s; print }' "$dir/idle.kinds" "$dir/idle.manifest" "$dir/manifest" >"$dir/manifest.idle"
	mv "$dir/manifest.idle" "$dir/manifest"
	opens=$(grep -E '^STATS ' "$wlog" | tail -n 1 | sed -n 's/.* opens=\([0-9]*\).*/\1/p')
	closes=$(grep -c '^IDLE closed' "$wlog" || true)
	idle_sum="${closes} closes, ${opens:-?} reopens (last STATS); cuts: $(sed -n 's/.* idle_at=//p' "$dir/manifest" | sort | uniq -c | awk '{ printf "%s%d %s", (NR > 1 ? ", " : ""), $1, $2 }')"
	log "sync=$pol round $r: idle: $idle_sum"
}

# replay_round POL R: one writer run on a fresh $img with the write log
# recorded, then $ncuts offline cuts of it verified $per_boot per boot;
# appends a row per cut to $work/cuts.txt (and POWERCUT_RESULTS) and one
# to summary. Fails if a cut of always/group failed.
replay_round() {
	local pol=$1 r=$2 run t0 t1 t2 cut names b batch vrc name verdict nfail=0 npass=0 nfsck=0 nloss=0 row
	local wlog=$work/$pol-$r.write dir=$work/cuts-$pol-$r
	run=$(((RANDOM << 30) | (RANDOM << 15) | RANDOM))
	next_seed
	mkdisk "$img"
	cp --sparse=always "$img" "$work/base.img"
	t0=$(date +%s.%N)
	stamp=1 cut_writer "$pol" "$r" "$run" "$wlog" || return 1
	t1=$(date +%s.%N)
	mkdir -p "$dir"
	"$work/hostiledisk" replay -log "$work/writes.log" -base "$work/base.img" -console "$wlog.stamp" \
		-out "$dir" -cuts "$ncuts" -pending "${POWERCUT_PENDING:-0}" -mode "$hmode" -seed "$rseed" >"$dir/manifest" 2>"$dir/replay.err" || {
		log "sync=$pol round $r: replay failed:"
		cat "$dir/replay.err" >&2
		return 1
	}
	local idle_sum=""
	[ -z "$idle" ] || idle_at "$pol" "$r" "$wlog"
	local wl=$work/writes.log failed=()
	if [ -n "${POWERCUT_KEEP:-}" ]; then # replay it again: hostiledisk replay -points ...
		mv "$work/writes.log" "$dir/writes.log"
		cp --sparse=always "$work/base.img" "$dir/base.img"
		wl=$dir/writes.log
	elif [ -z "${POWERCUT_FAILDIR:-}" ]; then # else kept until failed cuts are rebuilt
		rm -f "$work/writes.log"
	fi
	t2=$(date +%s.%N)
	mapfile -t names < <(awk '{ print $2 }' "$dir/manifest")
	# A cut whose file system the guest's kernel refuses to mount (e.g. a
	# torn jbd2 commit block: EUCLEAN, docs/perf/powercut.md) is recorded
	# as unmountable with the kernel's log; then, as systemd-fsck would
	# (fsck -y when the mount fails), e2fsck -fy (fsck.f2fs -f -y) repairs
	# a copy of its image, and a further verifier boot checks that copy
	# with the same checks: PASS-AFTER-FSCK, or FAIL (also when it still
	# will not mount).
	local fscked=() mf frc
	local -A unmountable=()
	for ((b = 0; b < ${#names[@]}; b += per_boot)); do
		batch=("${names[@]:b:per_boot}")
		verify_boot "$dir/verify-$b" "" "${batch[@]}"
		for name in "${batch[@]}"; do
			verdict=$(grep -E "^POWERCUT [A-Z]+ .*cut=$name " "$dir/verify-$b" | tail -n 1 || true)
			mf=$(grep -E "^MOUNTFAIL cut=$name " "$dir/verify-$b" | tail -n 1 || true)
			if [ -z "$verdict" ] && [ -n "$mf" ]; then
				grep -E "^KERNEL cut=$name " "$dir/verify-$b" | sed "s/^KERNEL cut=$name //" >"$dir/$name.kernel" || true
				cp --sparse=always "$dir/$name.img" "$dir/$name.fsck.img"
				fsck_img "$dir/$name.fsck.img" "$dir/$name.fsck"
				unmountable[$name]="unmountable=$(sed -n 's/.* errno=\([^ ]*\).*/\1/p' <<<"$mf") fsck_rc=$frc"
				fscked+=("$name")
				{
					echo "unmountable: arch=$arch fs=$fsrow sync=$pol round=$r run_seed=$rseed $(grep " $name " "$dir/manifest" | sed 's/^CUT //')"
					echo "  $mf"
					sed 's/^/  kernel: /' "$dir/$name.kernel"
					echo "  $fsck_name exit $frc:"
					sed 's/^/  fsck: /' "$dir/$name.fsck"
				} >"$dir/$name.unmountable"
				cat "$dir/$name.unmountable" >>"$work/unmountable.txt"
				[ -z "${POWERCUT_RESULTS:-}" ] || cat "$dir/$name.unmountable" >>"$POWERCUT_RESULTS.unmountable"
				log "$name of sync=$pol round $r does not mount ($mf); $fsck_name exit $frc; kernel: $(grep -E "(JBD2|EXT4-fs|F2FS-fs).*$(sed -n 's|.* dev=/dev/\([^ ]*\).*|\1|p' <<<"$mf")[-) ]" "$dir/$name.kernel" | sed 's/^<[0-9]>\[ *[0-9.]*\] //' | tr '\n' ' ')"
				continue
			fi
			cut_row "$name" "$verdict" "$dir/verify-$b" ""
			rm -f "$dir/$name.img"
		done
	done
	for ((b = 0; b < ${#fscked[@]}; b += per_boot)); do
		batch=("${fscked[@]:b:per_boot}")
		verify_boot "$dir/verify-fsck-$b" .fsck "${batch[@]}"
		for name in "${batch[@]}"; do
			verdict=$(grep -E "^POWERCUT [A-Z]+ .*cut=$name " "$dir/verify-fsck-$b" | tail -n 1 || true)
			case $verdict in
			"POWERCUT PASS "*) verdict="POWERCUT PASS-AFTER-FSCK ${verdict#POWERCUT PASS }" ;;
			"POWERCUT LOSS "*) verdict="POWERCUT LOSS-AFTER-FSCK ${verdict#POWERCUT LOSS }" ;;
			"") grep -qE "^MOUNTFAIL cut=$name " "$dir/verify-fsck-$b" &&
				verdict="POWERCUT FAIL unmountable even after $fsck_name: $(grep -E "^MOUNTFAIL cut=$name " "$dir/verify-fsck-$b" | tail -n 1)" ;;
			esac
			cut_row "$name" "$verdict" "$dir/verify-fsck-$b" "${unmountable[$name]} "
			rm -f "$dir/$name.img" "$dir/$name.fsck.img"
		done
	done
	if [ ${#failed[@]} -gt 0 ]; then # the failed cuts as the verifier first saw them
		local pts
		pts=$(printf '%s\n' "${failed[@]}" | sed 's/^cut-0*\([0-9]\)/\1/' | paste -sd,)
		mkdir -p "$POWERCUT_FAILDIR/rebuild"
		"$work/hostiledisk" replay -log "$wl" -base "$work/base.img" -console "$wlog.stamp" -out "$POWERCUT_FAILDIR/rebuild" \
			-points "$pts" -mode "$hmode" -seed "$rseed" >"$POWERCUT_FAILDIR/$pol-$r.rebuilt" 2>&1 || log "rebuilding $pts failed"
		for name in "${failed[@]}"; do
			mv "$POWERCUT_FAILDIR/rebuild/$name.img" "$POWERCUT_FAILDIR/$pol-$r-$name.img" 2>/dev/null || true
		done
		rm -rf "$POWERCUT_FAILDIR/rebuild"
	fi
	[ -n "${POWERCUT_KEEP:-}" ] || rm -f "$work/writes.log"
	row=$(printf 'sync=%-6s round %d (seed %s): writer cut after %s, write %5.1fs replay %5.1fs verify %5.1fs: %d cuts: %d pass, %d pass-after-fsck, %d loss, %d fail (%d unmountable before e2fsck)%s' \
		"$pol" "$r" "$rseed" "$cut" \
		"$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
		"$(awk -v a="$t1" -v b="$t2" 'BEGIN { print b - a }')" \
		"$(awk -v a="$t2" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')" \
		"${#names[@]}" "$npass" "$nfsck" "$nloss" "$nfail" "${#fscked[@]}" "${idle_sum:+; idle: $idle_sum}")
	summary+=("$row")
	log "$row"
	[ "$nfail" = 0 ]
}

fail=0
summary=()
for pol in "${policies[@]}"; do
	n=$rounds
	[ "$pol" = none ] && n=$none_rounds
	img=$work/disk-$pol.img
	mkdisk "$img"
	prev_max=0
	for ((r = 1; r <= n; r++)); do
		if [ "$disk" = replay ]; then
			replay_round "$pol" "$r" || fail=1
		else
			round "$pol" "$r" || fail=1
		fi
	done
done
printf '%s\n' "${summary[@]}" >&2
if [ $fail != 0 ]; then
	log "FAILED"
	exit 1
fi
log "passed: no acknowledged record lost under sync=always/group"
