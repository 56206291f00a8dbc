#!/usr/bin/env bash
# qemu.sh ARCH KERNEL INITRD ROOTIMG PAYLOADIMG GNSSPTY TIMEOUT — boot the
# systemd-test guest once (no reboot) and write its console to stdout,
# line-buffered, without carriage returns. PAYLOADIMG and GNSSPTY may be
# empty (no payload disk; no GNSS UART).
set -euo pipefail
arch=$1 kernel=$2 initrd=$3 rootimg=$4 payload=$5 gnss=$6 timeout=$7
append="root=/dev/vda rw quiet loglevel=3 panic=-1 mitigations=off systemd.show_status=0"
case $arch in
amd64)
	accel="tcg,thread=multi"
	if [ -w /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then accel=kvm; fi
	qemu=(qemu-system-x86_64 -accel "$accel" -cpu max -append "console=ttyS0 $append")
	;;
arm64)
	qemu=(qemu-system-aarch64 -M virt -cpu max,pauth=off -accel tcg,thread=multi -append "console=ttyAMA0 $append")
	;;
*) echo "qemu.sh: unsupported arch $arch" >&2; exit 2 ;;
esac
qemu+=(-smp 2 -m 1024 -nographic -nic none -no-reboot -kernel "$kernel" -initrd "$initrd"
	-drive "file=$rootimg,format=raw,if=virtio,cache=unsafe")
[ -z "$payload" ] || qemu+=(-drive "file=$payload,format=raw,if=virtio,cache=unsafe")
# A real 16550 UART (PCI) in the guest, connected to a host pty.
[ -z "$gnss" ] || qemu+=(-chardev "tty,id=gnss,path=$gnss" -device pci-serial,chardev=gnss)
timeout -k 5 "$timeout" "${qemu[@]}" </dev/null 2>&1 | stdbuf -oL tr -d '\r'
