//go:build vcan && linux

package obd

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcu-agent/tcu-agent/drivers/canmap"
	"github.com/tcu-agent/tcu-agent/drivers/drivertest"
	"github.com/tcu-agent/tcu-agent/drivers/sim"
	"github.com/tcu-agent/tcu-agent/drivers/socketcan"
)

// Kernel ISO-TP (CAN_ISOTP) socket options.
const (
	solCANISOTP  = unix.SOL_CAN_BASE + unix.CAN_ISOTP
	isotpOpts    = 1
	isotpRecvFC  = 2
	isotpPadding = 0x004 // CAN_ISOTP_TX_PADDING
)

// kernelISOTP opens a CAN_ISOTP socket on vcan0 receiving rx and sending
// tx, padding frames to 8 bytes, announcing block size bs and stmin in its
// flow control.
func kernelISOTP(t *testing.T, rx, tx uint32, bs, stmin byte) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_CAN, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.CAN_ISOTP)
	if err != nil {
		t.Fatalf("CAN_ISOTP socket: %v", err)
	}
	opts := []byte{isotpPadding, 0, 0, 0, 0, 0, 0, 0, 0, 0xCC, 0xCC, 0}
	if err := unix.SetsockoptString(fd, solCANISOTP, isotpOpts, string(opts)); err != nil {
		t.Fatalf("CAN_ISOTP_OPTS: %v", err)
	}
	if err := unix.SetsockoptString(fd, solCANISOTP, isotpRecvFC, string([]byte{bs, stmin, 0})); err != nil {
		t.Fatalf("CAN_ISOTP_RECV_FC: %v", err)
	}
	ifi, err := net.InterfaceByName("vcan0")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrCAN{Ifindex: ifi.Index, RxID: rx, TxID: tx}); err != nil {
		t.Fatalf("bind CAN_ISOTP: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// TestVcanDriverAgainstKernelISOTP: the ECU is the kernel's ISO-TP stack;
// the driver's own ISO-TP must reassemble its multi-frame VIN, sending flow
// control (block size 2, STmin 1 ms) that the kernel honours.
func TestVcanDriverAgainstKernelISOTP(t *testing.T) {
	const vin = "1G1JC5444R7252367"
	reqs := kernelISOTP(t, funcID11, 0x7E8, 0, 0) // functional requests in
	answer := kernelISOTP(t, 0x7E0, 0x7E8, 0, 0)  // answers out, flow control in
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() {
		buf := make([]byte, 64)
		for ctx.Err() == nil {
			// Closing a socket does not end a blocked read: poll.
			pfd := []unix.PollFd{{Fd: int32(reqs), Events: unix.POLLIN}}
			if k, err := unix.Poll(pfd, 100); err != nil || k == 0 {
				continue
			}
			n, err := unix.Read(reqs, buf)
			if err != nil || n < 2 {
				t.Logf("kernel isotp read: %d, %v", n, err)
				return
			}
			t.Logf("ECU got request % X", buf[:n])
			var resp []byte
			switch {
			case buf[0] == 0x01 && buf[1] == 0x00:
				resp = []byte{0x41, 0x00, 0x00, 0x08, 0x00, 0x00} // PID 0x0D
			case buf[0] == 0x01 && buf[1] == 0x0D:
				resp = []byte{0x41, 0x0D, 66}
			case buf[0] == 0x09 && buf[1] == 0x02:
				resp = append([]byte{0x49, 0x02, 0x01}, vin...)
			default:
				continue
			}
			if _, err := unix.Write(answer, resp); err != nil {
				t.Errorf("kernel isotp write: %v", err)
				return
			}
		}
	})
	spy, err := socketcan.Open("vcan0", socketcan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Close()
	wg.Go(func() { // logs the first frames on the wire, for diagnosis
		for range 12 {
			f, err := spy.Receive(ctx)
			if err != nil {
				return
			}
			t.Logf("wire: %03X % X", f.ID, f.Payload())
		}
	})
	d := New(drivertest.Params(t))
	d.Interface, d.BlockSize, d.STmin = "vcan0", 2, canmap.Duration(time.Millisecond)
	d.PIDs = []PIDConfig{{PID: 0x0D, Interval: canmap.Duration(100 * time.Millisecond)}}
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	sink := &drivertest.Sink{}
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx, sink) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run() = %v", err)
		}
	}()
	if s, ok := sink.Wait(30*time.Second, drivertest.Named(SignalVIN)); !ok || s.Label != vin {
		t.Fatalf("VIN = %+v, %v; want %s (stats %+v)", s, ok, vin, d.Stats())
	}
	if s, ok := sink.Wait(30*time.Second, drivertest.Named("Vehicle.OBD.Speed")); !ok || s.Value != 66 {
		t.Fatalf("speed = %+v, %v; want 66 (stats %+v)", s, ok, d.Stats())
	}
}

// TestVcanSimECUAgainstKernelISOTP: the tester is the kernel's ISO-TP
// stack (block size 1, STmin 5 ms); the simulated ECU's own ISO-TP must
// follow its flow control to deliver the VIN.
func TestVcanSimECUAgainstKernelISOTP(t *testing.T) {
	bus, err := socketcan.Open("vcan0", socketcan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ecu, err := sim.NewECU(sim.ECUOptions{Bus: bus})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); bus.Close(); wg.Wait() }()
	wg.Go(func() { _ = ecu.Run(ctx) })
	tester := kernelISOTP(t, 0x7E8, 0x7E0, 1, 5)
	tv := unix.NsecToTimeval((10 * time.Second).Nanoseconds())
	if err := unix.SetsockoptTimeval(tester, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(tester, []byte{0x09, 0x02}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := unix.Read(tester, buf)
	if err != nil {
		t.Fatalf("kernel isotp read: %v", err)
	}
	want := append([]byte{0x49, 0x02, 0x01}, sim.DefaultVIN...)
	if string(buf[:n]) != string(want) {
		t.Errorf("kernel received % X, want % X", buf[:n], want)
	}
}
