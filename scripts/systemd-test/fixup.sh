#!/bin/sh
# fixup.sh ROOT — make a debootstrapped Debian root boot as the
# systemd-test guest: what the host does after debootstrap (amd64) and the
# guest's initramfs after the second stage (arm64). POSIX sh: busybox runs
# it in the initramfs.
set -eu
r=$1
# In a container debootstrap may leave /proc a symlink to the host's
# /proc: systemd then fails to mount its API file systems (ELOOP).
for d in proc sys dev run; do
	if [ -L "$r/$d" ]; then rm "$r/$d"; mkdir "$r/$d"; fi
done
rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* 2>/dev/null || true
# First-boot identity: an empty machine-id makes systemd generate one.
: >"$r/etc/machine-id"
echo tcu-guest >"$r/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 tcu-guest\n::1 localhost\n' >"$r/etc/hosts"
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"$r/etc/fstab"
# No logins on consoles; the test driver talks on the console.
for u in getty@tty1.service serial-getty@ttyS0.service serial-getty@ttyAMA0.service \
	systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer; do
	ln -sf /dev/null "$r/etc/systemd/system/$u"
done
# The journal in memory is enough and keeps the image small.
mkdir -p "$r/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' >"$r/etc/systemd/journald.conf.d/tcu-test.conf"
# The test driver: scripts/systemd-test/guest.sh from the payload disk.
mkdir -p "$r/mnt/payload" "$r/var/lib/tcu-test" "$r/etc/systemd/system/multi-user.target.wants"
cat >"$r/etc/systemd/system/tcu-test.service" <<'UNIT'
[Unit]
Description=tcu-agent systemd test driver
After=local-fs.target
[Service]
Type=simple
ExecStartPre=/bin/mount /dev/vdb /mnt/payload
ExecStart=/mnt/payload/guest.sh
StandardOutput=tty
StandardError=tty
TTYPath=/dev/console
[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/tcu-test.service "$r/etc/systemd/system/multi-user.target.wants/tcu-test.service"
