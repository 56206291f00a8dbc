#!/usr/bin/env bash
# wear.sh — the buffer's flash-wear benchmark at the block device
# (docs/perf/buffer.md "Flash wear at the block device").
#
# Runs buffer/wear_test.go (build tag wear) inside the qemu VM of
# docs/vmtest.md, with the store on a fresh ext4 file system (mkfs.ext4
# defaults, as scripts/powercut.sh makes it) on a virtio disk, and counts
# what reaches the guest's block device (/sys/block/vda/stat: sectors
# written x 512, write requests, flushes) per cell: sync policy x rate x
# online (a consumer leases and acks like the uplink) / offline (nothing
# acked). The ext4 journal, metadata and 4 KiB block granularity are in
# the count. One VM boot runs every cell, one after the other.
#
# Environment (defaults in brackets):
#   WEAR_POLICIES  ["always group none"]   WEAR_RATES   ["20 200 2000"] records/s
#   WEAR_MODES     ["online offline"]      WEAR_SECONDS [60] per cell
#   WEAR_SIZE      [200] record bytes
#   WEAR_WINDOW, WEAR_MAX_WINDOW, WEAR_FILL  override Options.GroupWindow,
#                  GroupMaxWindow, GroupFill (e.g. 20ms, 250ms, 16384)
#   WEAR_THRESHOLD the value-log threshold in bytes (chunks at least this
#                  big go to the value log; default 4096, 16384 for always)
#   WEAR_PART_GB [8] WEAR_PE [30000] WEAR_WAF [2]  the endurance model:
#                  the part takes PART_GB x PE bytes of NAND programs; the
#                  device's own write amplification is WAF; lifetime =
#                  PART_GB x PE / WAF / (device bytes per day), at 24 h a
#                  day at the cell's rate
#   WEAR_TEST_BIN  a prebuilt static test binary (CGO_ENABLED=0 go test -c
#                  -tags wear ./buffer/), e.g. of another revision
#   WEAR_KEEP=1    keep the work directory (console log, disk image)
# amd64 only. Installs e2fsprogs (and via prepare.sh qemu & co.) when
# missing. Prints the raw WEAR lines to stderr and the table to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

log() { echo "wear: $*" >&2; }

if ! command -v mkfs.ext4 >/dev/null; then
	log "installing e2fsprogs"
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends e2fsprogs >&2
fi
base=$("$root/scripts/vmtest/prepare.sh" amd64)
export VMEXEC_BASE_amd64=$base
mods=$("$root/scripts/vmtest/diskmods.sh" "$base")

work=$(mktemp -d "${TMPDIR:-/tmp}/wear.XXXXXX")
if [ -n "${WEAR_KEEP:-}" ]; then
	log "keeping $work"
else
	trap 'rm -rf "$work"' EXIT
fi
if [ -n "${WEAR_TEST_BIN:-}" ]; then
	cp "$WEAR_TEST_BIN" "$work/buffer.test"
else
	log "building the test binary"
	CGO_ENABLED=0 GOARCH=amd64 go test -c -tags wear -o "$work/buffer.test" ./buffer/
fi

policies=${WEAR_POLICIES:-always group none}
rates=${WEAR_RATES:-20 200 2000}
modes=${WEAR_MODES:-online offline}
secs=${WEAR_SECONDS:-60}
ncells=$(($(wc -w <<<"$policies") * $(wc -w <<<"$rates") * $(wc -w <<<"$modes")))
img=$work/disk.img
truncate -s 1G "$img"
mkfs.ext4 -q -F "$img"
log "$ncells cells of ${secs}s in one VM"
rc=0
(cd "$root/buffer" && env VMEXEC_DISK="$img" VMEXEC_CPIO="$mods" \
	VMEXEC_TIMEOUT=$((300 + ncells * (secs + 60))) \
	VMTEST_WEAR=1 VMTEST_WEAR_POLICIES="$policies" VMTEST_WEAR_RATES="$rates" \
	VMTEST_WEAR_MODES="$modes" VMTEST_WEAR_SECONDS="$secs" VMTEST_WEAR_SIZE="${WEAR_SIZE:-200}" \
	VMTEST_WEAR_WINDOW="${WEAR_WINDOW:-}" VMTEST_WEAR_MAX_WINDOW="${WEAR_MAX_WINDOW:-}" \
	VMTEST_WEAR_FILL="${WEAR_FILL:-}" VMTEST_WEAR_THRESHOLD="${WEAR_THRESHOLD:-}" \
	"$root/scripts/vmexec" "$work/buffer.test" -test.run '^TestWear$' -test.v) \
	>"$work/out" 2>"$work/out.err" || rc=$?
grep -E '^(WEAR|WEARINFO) ' "$work/out" >&2 || true
if [ $rc != 0 ]; then
	log "the guest failed (vmexec exit $rc):"
	tail -n 40 "$work/out" "$work/out.err" >&2
	exit 1
fi

# WEAR policy rate mode seconds payload dev_bytes write_ios flushes queue_syncs jbd2 appends max_ms left acked
grep -E '^WEAR ' "$work/out" | awk -v gb="${WEAR_PART_GB:-8}" -v pe="${WEAR_PE:-30000}" -v waf="${WEAR_WAF:-2}" '
BEGIN {
	printf "| sync | rate/s | mode | s | device B / payload B | flushes/s | queue syncs/s | journal commits/s | writes/s | device MB/day | years (%d GB x %d P/E, device WAF %s) | max append ms |\n", gb, pe, waf
	print "|---|---|---|---|---|---|---|---|---|---|---|---|"
}
{
	s = $5; day = $7 / s * 86400
	years = day > 0 ? gb * 1e9 * pe / waf / day / 365 : 0
	printf "| %s | %d | %s | %.0f | %.2f | %.1f | %.1f | %.1f | %.1f | %.0f | %.1f | %.0f |\n",
		$2, $3, $4, s, $7 / $6, $9 / s, $10 / s, $11 / s, $8 / s, day / 1e6, years, $13
}'
