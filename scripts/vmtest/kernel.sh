#!/usr/bin/env bash
# kernel.sh ARCH VMLINUZ OUT — write the kernel qemu should boot to OUT.
# amd64: carve the uncompressed ELF vmlinux out of the bzImage (its xz
# payload), which qemu boots through the PVH entry point ~2.5x faster
# under TCG than the bzImage; falls back to the bzImage. arm64: Debian's
# vmlinuz is an Image (gunzipped if it happens to be compressed).
set -euo pipefail
arch=$1 in=$2 out=$3

if [ "$arch" = arm64 ]; then
	if file -b "$in" | grep -qi gzip; then
		gzip -dc "$in" >"$out"
	else
		cp "$in" "$out"
	fi
	exit 0
fi

# Byte offsets of the xz stream magic FD 37 7A 58 5A 00.
for off in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$in" | cut -d: -f1); do
	# xz stops after one stream, so tail may die of SIGPIPE: judge the output.
	{ tail -c +"$((off + 1))" "$in" | xz -dc --single-stream >"$out.tmp"; } 2>/dev/null || true
	if file -b "$out.tmp" | grep -q '^ELF 64-bit'; then
		mv "$out.tmp" "$out"
		exit 0
	fi
done
rm -f "$out.tmp"
echo "vmtest: could not extract vmlinux, booting the bzImage" >&2
cp "$in" "$out"
