//go:build vcan && linux

package socketcan

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
)

// TestVcanThroughput floods vcan0 from one socket (unpaced, a fresh
// long-lived context) while another reads, and reports frames/s received
// and frames dropped. It asserts only the accounting: every frame is either
// read, counted as a socket drop (SO_RXQ_OVFL), or lost before the socket
// (the netdev backlog, which SO_RXQ_OVFL cannot see); the number is in
// docs/perf/socketcan.md. VCAN_PERF_FRAMES overrides the frame count.
func TestVcanThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("throughput run skipped in -short mode")
	}
	total := 20000
	if v, err := strconv.Atoi(os.Getenv("VCAN_PERF_FRAMES")); err == nil && v > 0 {
		total = v
	}
	tx := mustOpen(t, "vcan0", Options{})
	rx := mustOpen(t, "vcan0", Options{})

	// Both sides use long-lived contexts, as the CAN driver does; the
	// receiver stops at a marker frame (id 0x7FF, unused by the flood)
	// sent after the flood, which also carries the final drop count.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sent := make(chan int, 1)
	go func() { // ends after total frames or the first error
		n := 0
		for i := range total {
			if err := tx.Send(ctx, canbus.Frame{ID: uint32(i % 0x7FF), Len: 8, Data: [64]byte{byte(i), byte(i >> 8)}}); err != nil {
				break
			}
			n++
		}
		sent <- n
		_ = tx.Send(ctx, canbus.Frame{ID: 0x7FF})
	}()

	start := time.Now()
	var last time.Time
	got := 0
	for {
		f, err := rx.Receive(ctx)
		if err != nil {
			t.Fatalf("Receive() after %d frames: %v (marker lost?)", got, err)
		}
		if f.ID == 0x7FF {
			break
		}
		got++
		last = time.Now()
	}
	n := <-sent
	drops := rx.Stats().Drops
	el := last.Sub(start)
	lost := uint64(n) - uint64(got) - drops
	t.Logf("vcan throughput: sent %d, received %d in %v (%.0f frames/s), socket drops %d, lost before the socket %d",
		n, got, el.Round(time.Millisecond), float64(got)/el.Seconds(), drops, lost)
	if n != total {
		t.Fatalf("sender stopped after %d of %d frames", n, total)
	}
	if uint64(got)+drops > uint64(n) {
		t.Errorf("received %d + dropped %d > sent %d", got, drops, n)
	}
}

// TestVcanDrainRate queues frames in a large socket buffer while nobody
// reads, then times how fast Receive drains them: the receive path's own
// cost (recvmsg, cmsg parsing, decoding), without the sender's scheduling.
func TestVcanDrainRate(t *testing.T) {
	if testing.Short() {
		t.Skip("throughput run skipped in -short mode")
	}
	const queued = 10000
	tx := mustOpen(t, "vcan0", Options{})
	rx := mustOpen(t, "vcan0", Options{RcvBuf: 64 << 20})
	ctx := context.Background()
	for i := range queued {
		if err := tx.Send(ctx, canbus.Frame{ID: uint32(i % 0x7FF), Len: 8}); err != nil {
			t.Fatalf("Send #%d: %v", i, err)
		}
	}
	// One context for the whole drain, as a driver's receive loop has.
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	start := time.Now()
	got := 0
	for got < queued {
		if _, err := rx.Receive(dctx); err != nil {
			break
		}
		got++
	}
	el := time.Since(start)
	s := rx.Stats()
	t.Logf("vcan drain: %d of %d queued frames read in %v (%.0f frames/s), socket drops %d",
		got, queued, el.Round(time.Millisecond), float64(got)/el.Seconds(), s.Drops)
	if uint64(got)+s.Drops > queued || got == 0 {
		t.Errorf("read %d + dropped %d, sent %d", got, s.Drops, queued)
	}
}
