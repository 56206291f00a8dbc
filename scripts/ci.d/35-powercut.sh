#!/usr/bin/env bash
# CI: the buffer's power-cut test (docs/perf/powercut.md): a writer in a
# qemu VM with its store on an ext4 virtio disk, qemu SIGKILLed mid-write,
# then a verifier boots on the same disk. 3 rounds each of sync=always
# and group, 2 of sync=none (which only reports its losses). Installs
# e2fsprogs and nbdkit and, through scripts/vmtest/prepare.sh, qemu & co.
# like 30-vmtest.sh, reusing its cached kernel image in .vm/ (measured
# 2.5 minutes with a warm cache; budget under 5).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec scripts/powercut.sh
