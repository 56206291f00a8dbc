#!/usr/bin/env bash
# vmtest.sh [amd64] [arm64] — run the real-kernel SocketCAN tests (build tag
# vcan) inside qemu for each architecture given (default: amd64), booting
# Debian's kernel with vcan0/vcan1 (docs/vmtest.md). Installs qemu & co.
# from apt when missing and caches kernels and base images in .vm/.
#
# VMTEST_PKGS overrides the package list (default: every package with a
# vcan-tagged test file); VMTEST_FLAGS adds go test flags (e.g. "-v -run X").
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(amd64)

if [ -n "${VMTEST_PKGS:-}" ]; then
	read -r -a pkgs <<<"$VMTEST_PKGS"
else
	mapfile -t pkgs < <(grep -rlE --include='*_test.go' '^//go:build .*\bvcan\b' . |
		xargs -r -n1 dirname | sort -u | sed 's|^\./|./|')
fi
[ ${#pkgs[@]} -gt 0 ] || { echo "vmtest: no vcan-tagged tests found" >&2; exit 1; }
read -r -a flags <<<"${VMTEST_FLAGS:-}"

rc=0
for arch in "${arches[@]}"; do
	t0=$(date +%s)
	base=$("$root/scripts/vmtest/prepare.sh" "$arch")
	export "VMEXEC_BASE_$arch=$base"
	t1=$(date +%s)
	echo "vmtest: $arch kernel $(cat "$base/version") ready in $((t1 - t0))s; testing ${pkgs[*]}" >&2
	if ! CGO_ENABLED=0 GOARCH=$arch go test -tags vcan -count=1 ${flags[@]+"${flags[@]}"} \
		-exec "$root/scripts/vmexec" "${pkgs[@]}"; then
		rc=1
	fi
	echo "vmtest: $arch done in $(($(date +%s) - t1))s (image $((t1 - t0))s)" >&2
done
exit $rc
