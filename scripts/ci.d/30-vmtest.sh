#!/usr/bin/env bash
# CI: real-kernel SocketCAN tests for amd64 inside qemu (docs/vmtest.md).
# Installs qemu, cpio, xz-utils, file and busybox-static from apt, then
# downloads Debian's kernel package into .vm/ (budget: under 5 minutes).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec scripts/vmtest.sh amd64
