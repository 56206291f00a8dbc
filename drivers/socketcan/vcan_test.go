//go:build vcan && linux

// Real-kernel tests: they need vcan0 and vcan1 up, as in the qemu guest
// that scripts/vmtest.sh boots (docs/vmtest.md).

package socketcan

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
)

func mustOpen(t *testing.T, iface string, opts Options) *Conn {
	t.Helper()
	c, err := Open(iface, opts)
	if err != nil {
		t.Fatalf("Open(%s) error = %v", iface, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recvTimeout(t *testing.T, c canbus.Bus, d time.Duration) (canbus.Frame, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return c.Receive(ctx)
}

func sendOne(t *testing.T, c canbus.Bus, f canbus.Frame) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Send(ctx, f); err != nil {
		t.Fatalf("Send(%#x) error = %v", f.ID, err)
	}
}

func TestVcanSendReceive(t *testing.T) {
	tx := mustOpen(t, "vcan0", Options{FD: true})
	rx := mustOpen(t, "vcan0", Options{FD: true})
	big := make([]byte, 64)
	for i := range big {
		big[i] = byte(0xFF - i)
	}
	tests := []struct {
		name string
		f    canbus.Frame
	}{
		{"classic standard", frameOf(0x123, false, false, 1, 2, 3)},
		{"classic extended", frameOf(0x18FEF100, true, false, 1, 2, 3, 4, 5, 6, 7, 8)},
		{"classic empty", frameOf(0x7FF, false, false)},
		{"fd extended 64", frameOf(0x1FFFFFFF, true, true, big...)},
		{"fd standard 12", frameOf(0x42, false, true, big[:12]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sendOne(t, tx, tt.f)
			got, err := recvTimeout(t, rx, 10*time.Second)
			if err != nil {
				t.Fatalf("Receive() error = %v", err)
			}
			if diff := cmp.Diff(tt.f, got, cmpopts.IgnoreFields(canbus.Frame{}, "Time")); diff != "" {
				t.Errorf("Receive() mismatch (-want +got):\n%s", diff)
			}
		})
	}
	if s := rx.Stats(); s.RxFrames != uint64(len(tests)) || s.Drops != 0 || s.State != StateActive {
		t.Errorf("receiver Stats() = %+v", s)
	}
	if s := tx.Stats(); s.TxFrames != uint64(len(tests)) {
		t.Errorf("sender Stats().TxFrames = %d, want %d", s.TxFrames, len(tests))
	}
}

func TestVcanClassicSocketNeverSeesFD(t *testing.T) {
	tx := mustOpen(t, "vcan0", Options{FD: true})
	rx := mustOpen(t, "vcan0", Options{})
	sendOne(t, tx, frameOf(0x10, false, true, make([]byte, 16)...))
	sendOne(t, tx, frameOf(0x11, false, false, 1))
	got, err := recvTimeout(t, rx, 10*time.Second)
	if err != nil || got.ID != 0x11 || got.FD {
		t.Fatalf("Receive() = %+v, %v; want the classic frame 0x11", got, err)
	}
	err = rx.Send(context.Background(), frameOf(0x12, false, true, 1))
	if !errors.Is(err, canbus.ErrInvalidFrame) {
		t.Errorf("Send(fd) on classic socket error = %v, want ErrInvalidFrame", err)
	}
}

func TestVcanKernelTimestamp(t *testing.T) {
	tx := mustOpen(t, "vcan0", Options{})
	rx := mustOpen(t, "vcan0", Options{})
	sendOne(t, tx, frameOf(0x20, false, false, 1))
	time.Sleep(300 * time.Millisecond) // the frame waits in the socket queue
	got, err := recvTimeout(t, rx, 10*time.Second)
	if err != nil {
		t.Fatalf("Receive() error = %v", err)
	}
	// A kernel timestamp is taken when the frame was queued, not when it
	// was read: it is at least the sleep in the past.
	if age := time.Since(got.Time); age < 250*time.Millisecond || age > time.Minute {
		t.Errorf("frame age = %v, want ≥ 250ms (kernel receive timestamp)", age)
	}
}

func TestVcanDeadlines(t *testing.T) {
	tx := mustOpen(t, "vcan0", Options{})
	rx := mustOpen(t, "vcan0", Options{})

	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if err := tx.Send(expired, frameOf(0x30, false, false)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Send(expired ctx) error = %v, want DeadlineExceeded", err)
	}
	start := time.Now()
	if _, err := recvTimeout(t, rx, 200*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Receive(quiet bus) error = %v, want DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Receive with 200ms deadline returned after %v", el)
	}
	// The socket still works after a timed-out read (the deadline is reset).
	sendOne(t, tx, frameOf(0x31, false, false, 9))
	if got, err := recvTimeout(t, rx, 10*time.Second); err != nil || got.ID != 0x31 {
		t.Errorf("Receive() after timeout = %#x, %v; want 0x31", got.ID, err)
	}
	if tx.Stats().TxFrames != 1 {
		t.Errorf("TxFrames = %d, want 1 (the expired send must not transmit)", tx.Stats().TxFrames)
	}
}

func TestVcanCloseUnblocksReceive(t *testing.T) {
	rx, err := Open("vcan0", Options{})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := rx.Receive(context.Background()); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	if err := rx.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Receive() after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Receive did not return after Close")
	}
	if err := rx.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
}

func TestVcanKernelDropCounted(t *testing.T) {
	tx := mustOpen(t, "vcan0", Options{})
	rx := mustOpen(t, "vcan0", Options{RcvBuf: 1}) // kernel minimum: a handful of frames
	const flood = 300
	for i := range flood {
		sendOne(t, tx, frameOf(uint32(0x100+i%0x100), false, false, byte(i)))
	}
	// Drain what fit, then one more frame carries the final drop count.
	n := 0
	for {
		if _, err := recvTimeout(t, rx, 500*time.Millisecond); err != nil {
			break
		}
		n++
	}
	sendOne(t, tx, frameOf(0x7FF, false, false, 0xEE))
	last, err := recvTimeout(t, rx, 10*time.Second)
	if err != nil || last.ID != 0x7FF {
		t.Fatalf("Receive() = %#x, %v; want the marker frame", last.ID, err)
	}
	s := rx.Stats()
	t.Logf("flood of %d: %d queued and read, %d dropped by the kernel", flood, n, s.Drops)
	if s.Drops == 0 || n == 0 {
		t.Fatalf("Stats() = %+v, want both delivered and dropped frames", s)
	}
	if uint64(n)+s.Drops != flood {
		t.Errorf("read %d + dropped %d != sent %d", n, s.Drops, flood)
	}
	if rx.Dropped() != s.Drops {
		t.Errorf("Dropped() = %d, want %d", rx.Dropped(), s.Drops)
	}
}

func TestVcanTwoInterfacesIsolated(t *testing.T) {
	tx0 := mustOpen(t, "vcan0", Options{})
	tx1 := mustOpen(t, "vcan1", Options{})
	rx0 := mustOpen(t, "vcan0", Options{})
	rx1 := mustOpen(t, "vcan1", Options{})
	sendOne(t, tx0, frameOf(0x100, false, false, 0))
	sendOne(t, tx1, frameOf(0x101, false, false, 1))
	for _, c := range []struct {
		rx   *Conn
		want uint32
	}{{rx0, 0x100}, {rx1, 0x101}} {
		got, err := recvTimeout(t, c.rx, 10*time.Second)
		if err != nil || got.ID != c.want {
			t.Errorf("%s: Receive() = %#x, %v; want %#x", c.rx.Iface(), got.ID, err, c.want)
		}
		if extra, err := recvTimeout(t, c.rx, 200*time.Millisecond); err == nil {
			t.Errorf("%s: unexpected second frame %#x (leak across interfaces)", c.rx.Iface(), extra.ID)
		}
	}
}
