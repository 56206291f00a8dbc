#!/usr/bin/env bash
# rootfs.sh ARCH — make sure a cached Debian 12 (bookworm) root file system
# with systemd as init exists for ARCH and print the directory that holds
# it (root.tar: the tree; version: the Debian kernel it carries modules
# for). The cache lives under ${TCU_CACHE:-$HOME/.cache/tcu-agent}/systemd-guest/
# and is keyed by this script's hash and the package list, so CI's second
# run reuses it.
#
# amd64 (the host's architecture): a full debootstrap — both stages run
# on the host in a chroot, so every base package's maintainer scripts ran
# and the guest's dpkg database is real.
# arm64: no binfmt here, so the second stage cannot run on the host; the
# first stage is unpacked (debootstrap --foreign) and the second stage
# runs inside the guest on its first boot (systemd-test.sh does that; it
# is slow under TCG and meant for once per release).
set -euo pipefail

arch=${1:?usage: rootfs.sh amd64|arm64}
here=$(cd "$(dirname "$0")" && pwd)
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

key=$(printf '%s\n' "$arch" "$pkgs" | cat - "$0" | sha256sum | cut -c1-10)
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

# In a container debootstrap may leave /proc a symlink to the host's
# /proc: systemd then fails to mount its API file systems (ELOOP).
for d in proc sys dev run; do
	if [ -L "$r/$d" ]; then rm "$r/$d"; mkdir "$r/$d"; fi
done
rm -rf "$r/var/cache/apt/archives/"*.deb "$r/var/lib/apt/lists/"* 2>/dev/null || true
# First-boot identity: an empty machine-id makes systemd generate one.
: >"$r/etc/machine-id"
echo tcu-guest >"$r/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 tcu-guest\n::1 localhost\n' >"$r/etc/hosts"
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"$r/etc/fstab"
# No logins on consoles; the test driver talks on the serial console.
for u in getty@tty1.service serial-getty@ttyS0.service serial-getty@ttyAMA0.service systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer; do
	ln -sf /dev/null "$r/etc/systemd/system/$u"
done
# Journal in memory is enough and keeps the image small.
mkdir -p "$r/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' >"$r/etc/systemd/journald.conf.d/tcu-test.conf"
tar -C "$r" --numeric-owner -cf "$tmp/root.tar" .
mkdir -p "$dir"
mv "$tmp/root.tar" "$dir/"
cp "$tmp/debootstrap.log" "$dir/"
touch "$dir/ready"
for old in "$cache/$arch"/*/; do
	[ "${old%/}" = "$dir" ] || rm -rf "${old%/}"
done
log "cached in $dir ($(du -sh "$dir/root.tar" | cut -f1), $(($(date +%s) - start)) s)"
echo "$dir"
