//go:build vcan && linux

package socketcan

import (
	"context"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
)

// TestVcanThroughput floods vcan0 from one socket (unpaced, a fresh
// long-lived context) while another reads, and reports frames/s received
// and frames dropped. It asserts only the accounting: every frame is either
// read, counted as a socket drop (SO_RXQ_OVFL), or lost before the socket
// (the netdev backlog, which SO_RXQ_OVFL cannot see); the number is in
// docs/perf/socketcan.md. VCAN_PERF_FRAMES overrides the frame count and
// VCAN_PERF_SECONDS the sending time budget (on a loaded machine the run
// measures what fits the budget instead of taking minutes).
func TestVcanThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("throughput run skipped in -short mode")
	}
	total := perfFrames(20000)
	budget := time.Now().Add(perfBudget())
	tx := mustOpen(t, "vcan0", Options{})
	rx := mustOpen(t, "vcan0", Options{})

	// Both sides use long-lived contexts, as the CAN driver does; the
	// receiver stops at a marker frame (id 0x7FF, unused by the flood)
	// sent after the flood, which also carries the final drop count.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sent := make(chan int, 1)
	seen := make(chan struct{})
	var markers atomic.Int64
	done := make(chan struct{})
	go func() { // ends when the receiver has seen the marker
		defer close(done)
		n := 0
		for i := range total {
			if time.Now().After(budget) {
				break // a loaded machine: measure what fits the time budget
			}
			if err := tx.Send(ctx, canbus.Frame{ID: uint32(i % 0x7FF), Len: 8, Data: [64]byte{byte(i), byte(i >> 8)}}); err != nil {
				break
			}
			n++
		}
		sent <- n
		// Repeat the marker until seen: a full receive queue drops it too.
		for {
			if tx.Send(ctx, canbus.Frame{ID: 0x7FF}) == nil {
				markers.Add(1)
			}
			select {
			case <-seen:
				return
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
		}
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
			close(seen)
			break
		}
		got++
		last = time.Now()
	}
	n := <-sent
	<-done
	// Markers dropped before the one received count as drops too.
	drops := rx.Stats().Drops - uint64(markers.Load()-1)
	el := last.Sub(start)
	lost := uint64(n) - uint64(got) - drops
	t.Logf("vcan throughput: sent %d, received %d in %v (%.0f frames/s), socket drops %d, lost before the socket %d",
		n, got, el.Round(time.Millisecond), float64(got)/el.Seconds(), drops, lost)
	if n == 0 {
		t.Fatal("sender sent nothing")
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
	tx := mustOpen(t, "vcan0", Options{})
	rx := mustOpen(t, "vcan0", Options{RcvBuf: 64 << 20})
	ctx := context.Background()
	budget := time.Now().Add(perfBudget())
	queued := 0
	for i := range perfFrames(10000) {
		if time.Now().After(budget) {
			break
		}
		if err := tx.Send(ctx, canbus.Frame{ID: uint32(i % 0x7FF), Len: 8}); err != nil {
			t.Fatalf("Send #%d: %v", i, err)
		}
		queued++
	}
	// One context for the whole drain, as a driver's receive loop has.
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
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
	if uint64(got)+s.Drops > uint64(queued) || got == 0 {
		t.Errorf("read %d + dropped %d, sent %d", got, s.Drops, queued)
	}
}

// perfFrames returns VCAN_PERF_FRAMES or def.
func perfFrames(def int) int {
	if v, err := strconv.Atoi(os.Getenv("VCAN_PERF_FRAMES")); err == nil && v > 0 {
		return v
	}
	return def
}

// perfBudget returns VCAN_PERF_SECONDS (default 5 s).
func perfBudget() time.Duration {
	if v, err := strconv.Atoi(os.Getenv("VCAN_PERF_SECONDS")); err == nil && v > 0 {
		return time.Duration(v) * time.Second
	}
	return 5 * time.Second
}
