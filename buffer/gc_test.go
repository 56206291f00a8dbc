package buffer_test

import (
	"context"
	"errors"
	"sync"
	"testing"

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
