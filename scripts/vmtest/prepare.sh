#!/usr/bin/env bash
# prepare.sh ARCH — make sure a Debian kernel and a base initramfs with vcan
# support exist for ARCH (amd64|arm64) under .vm/ARCH/KVER/ and print that
# directory. Idempotent: a cached directory is reused; it is keyed by the
# kernel version apt currently offers (offline: the newest cached one).
# Installs what it needs from Debian's apt when missing (needs root).
set -euo pipefail

arch=${1:?usage: prepare.sh amd64|arm64}
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${VMTEST_CACHE:-$root/.vm}
here=$(cd "$(dirname "$0")" && pwd)

log() { echo "vmtest: $*" >&2; }

case $arch in
amd64) pkgarch="" ;;
arm64) pkgarch=":arm64" ;;
*) log "unsupported arch $arch"; exit 2 ;;
esac

apt_install() {
	local missing=()
	command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
	command -v qemu-system-aarch64 >/dev/null || missing+=(qemu-system-arm)
	command -v cpio >/dev/null || missing+=(cpio)
	command -v xz >/dev/null || missing+=(xz-utils)
	command -v file >/dev/null || missing+=(file)
	[ -x /bin/busybox ] || missing+=(busybox-static)
	if [ ${#missing[@]} -gt 0 ]; then
		log "installing ${missing[*]}"
		apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
	fi
	if [ "$arch" = arm64 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
		log "adding dpkg architecture arm64"
		dpkg --add-architecture arm64
		apt-get update -qq >&2
	fi
}

# kernel_version prints e.g. 6.1.0-56-amd64, from apt's metapackage.
kernel_version() {
	apt-cache depends "linux-image-$arch$pkgarch" 2>/dev/null |
		sed -n "s/.*Depends: linux-image-\([0-9][^ :]*-$arch\).*/\1/p" | sort -V | tail -1
}

newest_cached() {
	ls -d "$cache/$arch"/*/ready 2>/dev/null | sort -V | tail -1 | xargs -r dirname
}

apt_install
kver=$(kernel_version || true)
if [ -z "$kver" ]; then
	apt-get update -qq >&2 || true
	kver=$(kernel_version || true)
fi
if [ -z "$kver" ]; then
	dir=$(newest_cached)
	[ -n "$dir" ] || { log "cannot find a linux-image-$arch package and nothing is cached"; exit 1; }
	echo "$dir"
	exit 0
fi
# The key includes a hash of the scripts that build the base image, so
# editing them rebuilds it.
key=$kver-$(cat "$here/init" "$here/initramfs.sh" "$here/kmods.sh" "$here/kernel.sh" | sha256sum | cut -c1-8)
dir=$cache/$arch/$key
if [ -e "$dir/ready" ]; then
	echo "$dir"
	exit 0
fi

mkdir -p "$cache/$arch"
# Serialise builders (go test runs several vmexec at once).
exec 9>"$cache/$arch/.lock"
flock 9
if [ -e "$dir/ready" ]; then
	echo "$dir"
	exit 0
fi
log "building base image for $arch (kernel $kver)"
tmp=$(mktemp -d "$cache/$arch/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 777 "$tmp" # apt-get download drops privileges to _apt
(cd "$tmp" && apt-get download -qq "linux-image-$kver$pkgarch" "busybox-static$pkgarch" >&2)
mkdir "$tmp/kpkg" "$tmp/bbpkg"
dpkg -x "$tmp"/linux-image-*.deb "$tmp/kpkg"
dpkg -x "$tmp"/busybox-static_*.deb "$tmp/bbpkg"

"$here/kernel.sh" "$arch" "$tmp/kpkg/boot/vmlinuz-$kver" "$tmp/kernel"
"$here/initramfs.sh" "$tmp/kpkg/lib/modules/$kver" "$tmp/bbpkg/bin/busybox" "$here/init" "$tmp/base.cpio.gz"

mkdir -p "$dir"
mv "$tmp/kernel" "$tmp/base.cpio.gz" "$dir/"
echo "$kver" >"$dir/version"
touch "$dir/ready"
# Older kernels and image versions are not needed any more.
for old in "$cache/$arch"/*/; do
	[ "${old%/}" = "$dir" ] || rm -rf "${old%/}"
done
log "cached in $dir"
echo "$dir"
