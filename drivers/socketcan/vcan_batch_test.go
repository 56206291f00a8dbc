//go:build vcan && linux

package socketcan

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
)

// TestVcanReceiveBatch: a burst read with recvmmsg arrives complete, in
// order, with kernel timestamps and in far fewer calls than frames; FD and
// classic frames mix; a context deadline still ends a blocked call.
func TestVcanReceiveBatch(t *testing.T) {
	tx := mustOpen(t, "vcan0", Options{FD: true})
	rx := mustOpen(t, "vcan0", Options{FD: true})
	const n = 300
	for i := range n {
		f := frameOf(uint32(i%0x7FF), false, false, byte(i), byte(i>>8))
		if i%7 == 0 {
			f = frameOf(uint32(i), true, true, make([]byte, 12)...)
			f.Data[0] = byte(i)
		}
		sendOne(t, tx, f)
	}
	fs := make([]canbus.Frame, 64)
	got, calls := 0, 0
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for got < n {
		k, err := rx.ReceiveBatch(ctx, fs)
		if err != nil {
			t.Fatalf("ReceiveBatch after %d frames: %v", got, err)
		}
		for _, f := range fs[:k] {
			if f.Data[0] != byte(got) || f.Time.IsZero() || f.FD != (got%7 == 0) {
				t.Fatalf("frame %d = %+v: out of order or without timestamp", got, f)
			}
			got++
		}
		calls++
	}
	if calls > n/4 {
		t.Errorf("%d frames in %d calls: recvmmsg did not batch", n, calls)
	}
	if st := rx.Stats(); st.RxFrames != n {
		t.Errorf("RxFrames = %d, want %d", st.RxFrames, n)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, err := rx.ReceiveBatch(short, fs); err == nil {
		t.Error("ReceiveBatch on a quiet bus returned without error")
	}
}

func guestCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestVcanDrainBatchVsSingle drains the same queued burst once with
// Receive (one recvmsg per frame) and once with ReceiveBatch (recvmmsg)
// and logs CPU per frame for each (docs/perf/can.md).
func TestVcanDrainBatchVsSingle(t *testing.T) {
	if testing.Short() {
		t.Skip("throughput run skipped in -short mode")
	}
	ctx := context.Background()
	for _, batch := range []bool{false, true} {
		tx := mustOpen(t, "vcan0", Options{})
		rx := mustOpen(t, "vcan0", Options{RcvBuf: 64 << 20})
		queued := 0
		budget := time.Now().Add(perfBudget())
		for i := range perfFrames(10000) {
			if time.Now().After(budget) {
				break
			}
			if err := tx.Send(ctx, canbus.Frame{ID: uint32(i % 0x7FF), Len: 8}); err != nil {
				t.Fatalf("Send #%d: %v", i, err)
			}
			queued++
		}
		dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		fs := make([]canbus.Frame, 64)
		c0, start := guestCPU(), time.Now()
		got := 0
		for got < queued {
			if batch {
				n, err := rx.ReceiveBatch(dctx, fs)
				if err != nil {
					break
				}
				got += n
			} else {
				if _, err := rx.Receive(dctx); err != nil {
					break
				}
				got++
			}
		}
		cpu, el := guestCPU()-c0, time.Since(start)
		cancel()
		t.Logf("vcan drain batch=%v: %d of %d frames in %v, %.2f CPU-µs/frame, socket drops %d",
			batch, got, queued, el.Round(time.Millisecond), float64(cpu.Nanoseconds())/1e3/float64(max(got, 1)), rx.Stats().Drops)
		if got == 0 {
			t.Errorf("batch=%v: nothing read", batch)
		}
		tx.Close()
		rx.Close()
	}
}
