package buffer_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/buffer"
)

// TestSteadyStateReclaimsDisk runs the queue the way a connected vehicle
// does: append, publish, ack, with a GC pass now and then; one critical
// record per round is never acked, so every value-log file keeps something
// alive and value-log GC has to move it. The store must stay bounded by
// what is kept, not by what went through, and the kept records must
// survive (with their data) the rewrites and a reopen.
func TestSteadyStateReclaimsDisk(t *testing.T) {
	t.Parallel()
	o := testOptions(t)
	o.Sync = buffer.SyncNone
	o.MaxBytes = 1 << 30
	o.GCInterval = time.Hour // the test collects by hand
	q := mustOpen(t, o)
	rounds, perRound := 40, 1000
	if testing.Short() {
		rounds = 12
	}
	data := bytes.Repeat([]byte("t"), 8000)
	kept := map[uint64]string{}
	var maxDisk int64
	for round := range rounds {
		batch := make([][]byte, perRound)
		for i := range batch {
			batch[i] = data
		}
		if _, err := q.AppendBatch(context.Background(), buffer.ClassTelemetry, batch); err != nil {
			t.Fatal(err)
		}
		// Large enough to go to the value log (small chunks stay inline).
		k := fmt.Sprintf("keep-%d-%s", round, bytes.Repeat([]byte("k"), 300))
		kept[mustAppend(t, q, buffer.ClassCritical, k)] = k
		for {
			recs, err := q.Lease(256, 0)
			if err != nil {
				t.Fatal(err)
			}
			var acks []uint64
			for _, r := range recs {
				if r.Class == buffer.ClassTelemetry {
					acks = append(acks, r.Seq)
				}
			}
			if len(acks) == 0 {
				q.Release(seqsOf(recs)...)
				break
			}
			if err := q.Ack(acks...); err != nil {
				t.Fatal(err)
			}
			q.Release(seqsOf(recs)...)
		}
		q.CollectGarbage()
		maxDisk = max(maxDisk, q.Stats().DiskBytes)
	}
	through := int64(rounds * perRound * len(data))
	final := q.Stats().DiskBytes
	t.Logf("%d MB through the queue; disk max %d KB, final %d KB", through>>20, maxDisk>>10, final>>10)
	// Kept: one 300-byte record per round. Allowed: the value-log head file
	// and a few before it (8 MB each), the tree, WALs and manifest.
	if limit := int64(40 << 20); final > limit || limit > through/2 {
		t.Fatalf("store holds %d bytes after %d rounds (%d MB appended and acked), want <= %d", final, rounds, through>>20, limit)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = mustOpen(t, o)
	got := map[uint64]string{}
	for _, r := range leaseAll(t, q) {
		got[r.Seq] = string(r.Data)
	}
	if len(got) != len(kept) {
		t.Fatalf("after reopen %d records, want the %d kept ones", len(got), len(kept))
	}
	for s, d := range kept {
		if got[s] != d {
			t.Fatalf("kept seq %d = %q, want %q", s, got[s], d)
		}
	}
}

func seqsOf(recs []buffer.Record) []uint64 {
	s := make([]uint64, len(recs))
	for i, r := range recs {
		s[i] = r.Seq
	}
	return s
}
