#!/usr/bin/env bash
# rootfs.sh ARCH — make sure a cached Debian 12 (bookworm) root file
# system with systemd as init exists for ARCH and print the directory that
# holds it: root.img, a 3 GB sparse ext4 image (copied per test run). The
# cache lives under ${TCU_CACHE:-$HOME/.cache/tcu-agent}/systemd-guest/ and
# is keyed by this script, fixup.sh, init and the package list, so CI's
# second run reuses it.
#
# amd64 (the host's architecture): a full debootstrap — both stages run
# on the host in a chroot, so every base package's maintainer scripts ran
# and the guest's dpkg database is real — then fixup.sh.
# arm64: no binfmt here, so the second stage cannot run on the host:
# debootstrap --foreign unpacks, then the guest boots once under qemu and
# its initramfs (init) runs the second stage in a chroot and fixup.sh.
# Slow under TCG; cached, and meant for once per release.
set -euo pipefail

arch=${1:?usage: rootfs.sh amd64|arm64}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${TCU_CACHE:-$HOME/.cache/tcu-agent}/systemd-guest
mirror=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}
mirror=${mirror:-http://deb.debian.org/debian}

# What the tests need in the guest: systemd as PID 1, iproute2 for vcan,
# kmod for modprobe, procps, dbus for systemctl, util-linux's setpriv.
pkgs=systemd-sysv,systemd,udev,dbus,iproute2,kmod,procps,util-linux,ca-certificates

log() { echo "systemd-test: $*" >&2; }

missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

key=$(printf '%s\n' "$arch" "$pkgs" | cat - "$0" "$here/fixup.sh" "$here/init" | sha256sum | cut -c1-10)
dir=$cache/$arch/$key
if [ -e "$dir/ready" ]; then
	echo "$dir"
	exit 0
fi
mkdir -p "$cache/$arch"
exec 9>"$cache/$arch/.lock"
flock 9
if [ -e "$dir/ready" ]; then
	echo "$dir"
	exit 0
fi

tmp=$(mktemp -d "$cache/$arch/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
r=$tmp/root
start=$(date +%s)
if [ "$arch" = "$(dpkg --print-architecture)" ]; then
	log "debootstrap $arch ($pkgs) from $mirror"
	debootstrap --arch="$arch" --variant=minbase --include="$pkgs" bookworm "$r" "$mirror" >"$tmp/debootstrap.log" 2>&1 ||
		{ tail -30 "$tmp/debootstrap.log" >&2; exit 1; }
else
	log "debootstrap --foreign $arch ($pkgs) from $mirror"
	debootstrap --foreign --arch="$arch" --variant=minbase --include="$pkgs" bookworm "$r" "$mirror" >"$tmp/debootstrap.log" 2>&1 ||
		{ tail -30 "$tmp/debootstrap.log" >&2; exit 1; }
fi
log "debootstrap took $(($(date +%s) - start)) s"

if [ "$arch" = "$(dpkg --print-architecture)" ]; then
	sh "$here/fixup.sh" "$r"
else
	# The second stage runs in the guest: scripts/systemd-test/init sees
	# /debootstrap, runs it in a chroot, then tcu-fixup.sh, and powers off.
	cp "$here/fixup.sh" "$r/tcu-fixup.sh"
	for d in proc sys dev run; do
		if [ -L "$r/$d" ]; then rm "$r/$d"; mkdir "$r/$d"; fi
	done
fi
truncate -s 3G "$tmp/root.img"
mkfs.ext4 -q -F -L root -d "$r" "$tmp/root.img"
rm -rf "$r"
if [ "$arch" != "$(dpkg --print-architecture)" ]; then
	log "debootstrap --second-stage in an $arch guest (slow under TCG; once per cache)"
	t=$(date +%s)
	base=$("$root/scripts/vmtest/prepare.sh" "$arch")
	mods=$("$root/scripts/vmtest/diskmods.sh" "$base")
	"$here/initrd.sh" "$base" "$mods" "$tmp/initrd"
	"$here/qemu.sh" "$arch" "$base/kernel" "$tmp/initrd" "$tmp/root.img" "" "" ${SYSTEMD_TEST_STAGE2_TIMEOUT:-5400} |
		tee "$tmp/stage2.log" | grep --line-buffered -E '^(SECOND_STAGE|I: |W: |E: )' >&2 || true
	grep -q '^SECOND_STAGE_RC=0' "$tmp/stage2.log" || { tail -30 "$tmp/stage2.log" >&2; log "second stage failed"; exit 1; }
	log "second stage took $(($(date +%s) - t)) s"
fi
mkdir -p "$dir"
mv "$tmp/root.img" "$dir/"
cp "$tmp/debootstrap.log" "$dir/"
touch "$dir/ready"
for old in "$cache/$arch"/*/; do
	[ "${old%/}" = "$dir" ] || rm -rf "${old%/}"
done
log "cached in $dir ($(du -sh "$dir/root.img" | cut -f1) used, $(($(date +%s) - start)) s)"
echo "$dir"
