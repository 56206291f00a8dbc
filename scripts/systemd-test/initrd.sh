#!/usr/bin/env bash
# initrd.sh BASEDIR DISKMODS OUT — the systemd-test guest's initramfs: the
# vmtest base (busybox, CAN modules; BASEDIR from vmtest/prepare.sh), the
# disk modules (vmtest/diskmods.sh) and scripts/systemd-test/init laid
# over the base's /init.
set -euo pipefail
base=$1 mods=$2 out=$3
here=$(cd "$(dirname "$0")" && pwd)
ovl=$(mktemp -d)
trap 'rm -rf "$ovl"' EXIT
cp "$here/init" "$ovl/init"
chmod 755 "$ovl/init"
(cd "$ovl" && echo init | cpio -o -H newc -R 0:0 --quiet) >"$ovl/ovl.cpio"
cat "$base/base.cpio.gz" "$mods" "$ovl/ovl.cpio" >"$out"
