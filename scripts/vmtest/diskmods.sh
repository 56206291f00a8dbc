#!/usr/bin/env bash
# diskmods.sh BASEDIR — make sure BASEDIR (a cache directory printed by
# prepare.sh) holds diskmods.cpio, an uncompressed newc archive with the
# kernel modules a guest needs to mount an ext4 file system on a virtio
# disk, and print its path. The archive holds /diskmods/<name>.ko and
# /diskmods/order (load order, dependencies first); the guest loads them
# itself (buffer/powercut_test.go). Append it to a vmexec initrd with
# VMEXEC_CPIO. The base initramfs carries only the CAN modules, so the
# kernel package is downloaded again (apt-get download, dpkg -x; nothing
# is installed).
set -euo pipefail

base=${1:?usage: diskmods.sh BASEDIR}
out=$base/diskmods.cpio
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
wanted="virtio_pci virtio_blk crc32c_generic ext4"
declare -A seen
order=()
add() {
	local name=$1 path deps d
	[ -n "${seen[$name]:-}" ] && return 0
	seen[$name]=1
	path=$(find "$moddir/kernel" \( -name "$name.ko*" -o -name "${name//_/-}.ko*" \) | head -1)
	[ -n "$path" ] || { echo "diskmods: module $name not found (built in?)" >&2; return 0; }
	case $path in
	*.xz) xz -dc "$path" >"$r/diskmods/$name.ko" ;;
	*.zst) zstd -qdc "$path" >"$r/diskmods/$name.ko" ;;
	*.gz) gzip -dc "$path" >"$r/diskmods/$name.ko" ;;
	*) cp "$path" "$r/diskmods/$name.ko" ;;
	esac
	deps=$(tr '\0' '\n' <"$r/diskmods/$name.ko" | sed -n 's/^depends=//p' | head -1 | tr ',' ' ')
	for d in $deps; do
		add "$d"
	done
	order+=("$name")
}
for m in $wanted; do add "$m"; done
printf '%s\n' "${order[@]}" >"$r/diskmods/order"
(cd "$r" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$out.tmp"
mv "$out.tmp" "$out"
echo "diskmods: cached $out (${order[*]})" >&2
echo "$out"
