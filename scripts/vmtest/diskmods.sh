#!/usr/bin/env bash
# diskmods.sh BASEDIR [f2fs] — make sure BASEDIR (a cache directory printed
# by prepare.sh) holds diskmods.cpio, an uncompressed newc archive with the
# kernel modules a guest needs to mount an ext4 file system on a virtio
# disk (with "f2fs": diskmods-f2fs.cpio, the same plus f2fs and the
# crc32 crypto algorithm it asks for), and print its path. The archive holds /diskmods/<name>.ko and
# /diskmods/order (load order, dependencies first); the guest loads them
# itself (buffer/powercut_test.go). Append it to a vmexec initrd with
# VMEXEC_CPIO. The base initramfs carries only the CAN modules, so the
# kernel package is downloaded again (apt-get download, dpkg -x; nothing
# is installed).
set -euo pipefail

base=${1:?usage: diskmods.sh BASEDIR [f2fs]}
extra=${2:-}
case $extra in
"") out=$base/diskmods.cpio ;;
f2fs) out=$base/diskmods-f2fs.cpio ;;
*) echo "diskmods: $extra: want no file system or f2fs" >&2; exit 2 ;;
esac
[ -s "$out" ] && { echo "$out"; exit 0; }
kver=$(cat "$base/version")
case $kver in
*-amd64) pkgarch="" ;;
*-arm64) pkgarch=":arm64" ;;
*) echo "diskmods: unknown kernel $kver" >&2; exit 2 ;;
esac

exec 9>"$base/.diskmods.lock"
flock 9
[ -s "$out" ] && { echo "$out"; exit 0; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/diskmods.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 777 "$tmp" # apt-get download drops privileges to _apt
(cd "$tmp" && apt-get download -qq "linux-image-$kver$pkgarch" >&2)
dpkg -x "$tmp"/linux-image-*.deb "$tmp/kpkg"
moddir=$tmp/kpkg/lib/modules/$kver
r=$tmp/root
mkdir -p "$r/diskmods"

# ext4 with metadata_csum needs the crc32c crypto algorithm, which no
# module depends on by name: list it explicitly, before ext4.
wanted=(virtio_pci virtio_blk crc32c_generic ext4)
# f2fs (6.1) checksums with the "crc32" shash (crc32_generic), again not
# a module dependency by name.
[ "$extra" != f2fs ] || wanted+=(crc32_generic f2fs)
# shellcheck source-path=SCRIPTDIR source=kmods.sh
. "$(dirname "$0")/kmods.sh"
kmods_collect "$moddir" "$r/diskmods" "${wanted[@]}" >"$r/diskmods/order"
(cd "$r" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$out.tmp"
mv "$out.tmp" "$out"
echo "diskmods: cached $out ($(tr '\n' ' ' <"$r/diskmods/order"))" >&2
echo "$out"
