#!/usr/bin/env bash
# CI: the buffer's power-cut test (docs/perf/powercut.md) on the hostile
# disk (scripts/hostiledisk): per policy (always, group, none) one writer
# run in a qemu VM with its store on an ext4 virtio disk served by the
# hostile NBD server, which records every write and flush; 8 power cuts
# at random flush boundaries of that run (mode mixed: nothing, a prefix, a
# subset in random order or a subset with a torn 4 KiB page of the writes
# pending) are rebuilt offline and verified in one boot; a cut the kernel
# will not mount is repaired with e2fsck -fy and verified in one more boot
# (pass-after-fsck; only a lost/damaged record or an image e2fsck cannot
# fix fails). Then one live round (group, file model) whose cut is made
# unmountable on purpose (POWERCUT_LIVE_BREAK=gdt): the live fsck
# fallback must repair the disk in place and pass. Installs e2fsprogs
# and, through scripts/vmtest/prepare.sh, qemu & co. like 30-vmtest.sh,
# reusing its cached kernel image in .vm/ (budget under 5 minutes with a
# warm cache; measured in docs/perf/powercut.md). f2fs is not run here:
# it loses acknowledged records on torn cuts (docs/perf/powercut.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
env POWERCUT_DISK=replay POWERCUT_CUTS="${POWERCUT_CUTS:-8}" \
	POWERCUT_MIN_LINES="${POWERCUT_MIN_LINES:-150}" POWERCUT_MAX_LINES="${POWERCUT_MAX_LINES:-400}" scripts/powercut.sh
exec env POWERCUT_DISK=file POWERCUT_LIVE_BREAK=gdt POWERCUT_POLICIES=group POWERCUT_ROUNDS=1 \
	POWERCUT_MIN_LINES="${POWERCUT_MIN_LINES:-150}" POWERCUT_MAX_LINES="${POWERCUT_MAX_LINES:-400}" scripts/powercut.sh
