package buffer_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/buffer"
	"github.com/tcu-agent/tcu-agent/buffer/buffertest"
)

// TestDrainReclaimsDisk: after filling and draining, one GC pass compacts
// the deleted chunks away and gives the value log back; the store keeps
// working and the counters are consistent after a reopen.
func TestDrainReclaimsDisk(t *testing.T) {
	t.Parallel()
	o := testOptions(t)
	o.Sync = buffer.SyncNone
	o.MaxBytes = 1 << 30
	q := mustOpen(t, o)
	n := 100_000
	if testing.Short() {
		n = 20_000 // 80 MB: several 8 MB value-log files
	}
	data := make([]byte, 4000)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < n; i += 8 {
				if _, err := q.Append(context.Background(), buffer.Class(i%3), data); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	q.CollectGarbage()
	full := q.Stats().DiskBytes
	drain(t, q)
	q.CollectGarbage()
	q.CollectGarbage()
	s := q.Stats()
	t.Logf("disk: %d bytes full, %d after drain and GC", full, s.DiskBytes)
	if s.Records != 0 || s.Bytes != 0 {
		t.Fatalf("after drain: %d records, %d bytes", s.Records, s.Bytes)
	}
	if s.DiskBytes > full/2 {
		t.Fatalf("disk after drain+GC = %d bytes, want < half of %d", s.DiskBytes, full)
	}
	last := mustAppend(t, q, buffer.ClassEvent, "after")
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = mustOpen(t, o)
	recs := leaseAll(t, q)
	if len(recs) != 1 || recs[0].Seq != last {
		t.Fatalf("after reopen: %d records, want only seq %d", len(recs), last)
	}
}

func drain(t testing.TB, q *buffer.Queue) {
	t.Helper()
	for {
		recs, err := q.Lease(1024, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return
		}
		seqs := make([]uint64, len(recs))
		for i, r := range recs {
			seqs[i] = r.Seq
		}
		if err := q.Ack(seqs...); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFaulty checks the fault knobs consumers rely on.
func TestFaulty(t *testing.T) {
	t.Parallel()
	q := mustOpen(t, testOptions(t))
	f := buffertest.NewFaulty(q)
	boom := context.DeadlineExceeded
	f.FailAppend(boom)
	if _, err := f.Append(context.Background(), buffer.ClassEvent, []byte("x")); !errors.Is(err, boom) {
		t.Fatalf("Append = %v, want injected error", err)
	}
	f.FailAppend(nil)
	s, err := f.Append(context.Background(), buffer.ClassEvent, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	f.FailAck(boom)
	if err := f.Ack(s); !errors.Is(err, boom) {
		t.Fatalf("Ack = %v, want injected error", err)
	}
	if q.Stats().Records != 1 {
		t.Fatal("failed Ack deleted the record")
	}
	f.FailLease(boom)
	if _, err := f.Lease(1, 0); !errors.Is(err, boom) {
		t.Fatalf("Lease = %v, want injected error", err)
	}
	if a, k := f.Calls(); a != 2 || k != 1 {
		t.Fatalf("Calls = %d, %d; want 2, 1", a, k)
	}
}

// TestIdleGCLoopSleeps: an open store with records (no TTL) and nothing
// written for several GCIntervals runs at most one GC-loop iteration (the
// pass for its last writes), then sleeps: no ticker.
func TestIdleGCLoopSleeps(t *testing.T) {
	t.Parallel()
	o := testOptions(t)
	o.GCInterval = 100 * time.Millisecond
	q := mustOpen(t, o)
	mustAppend(t, q, buffer.ClassTelemetry, "a")
	mustAppend(t, q, buffer.ClassEvent, "b")
	// The pass for those writes comes GCInterval after the last pass:
	// wait until the loop has been quiet for 5 intervals.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := buffer.GCIterations(q)
		time.Sleep(5 * o.GCInterval)
		if buffer.GCIterations(q) == n && n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GC loop never went quiet (%d iterations)", n)
		}
	}
	before := buffer.GCIterations(q)
	// An idle period of 20 GC intervals.
	time.Sleep(20 * o.GCInterval)
	if n := buffer.GCIterations(q) - before; n > 1 {
		t.Fatalf("GC loop woke %d times in 20 idle intervals, want <= 1", n)
	}
	if s := q.Stats(); s.Records != 2 {
		t.Fatalf("Stats.Records = %d, want 2", s.Records)
	}
}

// TestTTLExpiresOnTime: with a fake clock, records expire once the clock
// passes their append time + TTL, and not before; the sweep is driven by
// the deadline, not a ticker.
func TestTTLExpiresOnTime(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		advance time.Duration // clock moved after the first append
		expired uint64
	}{
		{"before ttl", 30 * time.Second, 0},
		{"just after ttl", time.Minute + time.Millisecond, 1},
		{"long after ttl", time.Hour, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clk := buffertest.NewClock(t0)
			o := testOptions(t)
			o.Now = clk.Now
			o.TTL = map[buffer.Class]time.Duration{buffer.ClassTelemetry: time.Minute}
			q := mustOpen(t, o)
			mustAppend(t, q, buffer.ClassTelemetry, "old")
			clk.Advance(tc.advance)
			// The next append (a later record) tells the loop the
			// clock passed its deadline.
			mustAppend(t, q, buffer.ClassTelemetry, "new")
			deadline := time.Now().Add(30 * time.Second)
			for q.Stats().Classes[buffer.ClassTelemetry].Expired < tc.expired && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if tc.expired == 0 {
				// Give a wrongly armed sweep the chance to run.
				time.Sleep(200 * time.Millisecond)
			}
			s := q.Stats().Classes[buffer.ClassTelemetry]
			if s.Expired != tc.expired || s.Records != 2-int64(tc.expired) {
				t.Fatalf("expired %d, records %d; want %d, %d", s.Expired, s.Records, tc.expired, 2-tc.expired)
			}
		})
	}
}

// TestTTLTimerExpires: on the real clock, with nothing else happening, a
// record expires at its deadline (the GC goroutine's timer), and the loop
// then sleeps: the class is empty, no deadline is left.
func TestTTLTimerExpires(t *testing.T) {
	t.Parallel()
	o := testOptions(t)
	o.TTL = map[buffer.Class]time.Duration{buffer.ClassTelemetry: 300 * time.Millisecond}
	q := mustOpen(t, o)
	start := time.Now()
	mustAppend(t, q, buffer.ClassTelemetry, "x")
	deadline := time.Now().Add(30 * time.Second)
	for q.Stats().Classes[buffer.ClassTelemetry].Expired == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if q.Stats().Classes[buffer.ClassTelemetry].Expired != 1 {
		t.Fatal("record not expired within 30 s of a 300 ms TTL")
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("expired after %v, before its TTL", took)
	}
}
