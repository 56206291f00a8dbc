#!/usr/bin/env bash
# initramfs.sh MODDIR BUSYBOX INIT OUT — build the base initramfs: busybox,
# the CAN kernel modules (decompressed, in dependency order in
# /modules.order) and /init. OUT is gzip-compressed and padded to a
# 512-byte multiple so that an uncompressed payload cpio appended to it
# starts 4-byte aligned (the kernel requires that).
set -euo pipefail
moddir=$1 busybox=$2 init=$3 out=$4

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
r=$work/root
mkdir -p "$r"/{bin,sbin,etc,proc,sys,dev,tmp,run,lib/modules}
cp "$busybox" "$r/bin/busybox"
cp "$init" "$r/init"
chmod 755 "$r/init" "$r/bin/busybox"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$r/etc/hosts"
printf 'root:x:0:0:root:/:/bin/sh\n' >"$r/etc/passwd"
printf 'root:x:0:\n' >"$r/etc/group"

wanted=(can can-dev can-raw can-bcm can-gw vcan vxcan can-isotp can-j1939)
# shellcheck source-path=SCRIPTDIR source=kmods.sh
. "$(dirname "$0")/kmods.sh"
kmods_collect "$moddir" "$r/lib/modules" "${wanted[@]}" >"$r/modules.order"

(cd "$r" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9n >"$out"
truncate -s %512 "$out"
