package buffer_test

import (
	"context"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/buffer"
)

// l0Stall is badgerOptions' NumLevelZeroTablesStall: at this many level-0
// tables a memtable flush, and then every write, waits for a compaction.
const l0Stall = 12

// writeInline appends n batches of 10 records of 200 bytes (2 KB chunks:
// inline in the LSM tree, the load that fills level 0 fastest) and returns
// the highest level-0 table count seen after a batch. It fails the test
// when the appends do not finish by the deadline.
func writeInline(t *testing.T, q *buffer.Queue, n int, deadline time.Duration) (maxL0 int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	data := make([][]byte, 10)
	for i := range data {
		data[i] = make([]byte, 200)
	}
	for i := range n {
		if _, err := q.AppendBatch(ctx, buffer.ClassTelemetry, data); err != nil {
			t.Fatalf("batch %d of %d: %v (level 0: %d tables)", i, n, err, buffer.L0Tables(q))
		}
		maxL0 = max(maxL0, buffer.L0Tables(q))
	}
	return maxL0
}

// TestCompactorKeepsLevel0BelowStall: with no Badger compactors, sustained
// writes of 40 memtables' worth of tree entries (small memtables) never
// reach the level-0 stall, finish in bounded time, and every record is
// there afterwards.
func TestCompactorKeepsLevel0BelowStall(t *testing.T) {
	t.Parallel()
	o := testOptions(t)
	o.Sync = buffer.SyncNone
	o.MaxBytes = 1 << 30
	const memtable = 256 << 10
	buffer.SetMemTableSize(&o, memtable)
	q := mustOpen(t, o)
	batches := 40 * memtable / 2048 // 40 memtables of 2 KB chunks
	maxL0 := writeInline(t, q, batches, 2*time.Minute)
	if maxL0 >= l0Stall {
		t.Fatalf("level 0 reached %d tables (stall at %d)", maxL0, l0Stall)
	}
	if buffer.Compactions(q) == 0 {
		t.Fatalf("no compaction ran (level 0 peaked at %d tables)", maxL0)
	}
	t.Logf("%d batches: level 0 peaked at %d tables, %d compactions", batches, maxL0, buffer.Compactions(q))
	if s := q.Stats(); s.Records != int64(batches*10) {
		t.Fatalf("Stats.Records = %d, want %d", s.Records, batches*10)
	}
	if got := len(leaseAll(t, q)); got != batches*10 {
		t.Fatalf("leased %d records, want %d", got, batches*10)
	}
}

// TestReopenCompactsLevel0: a store left with many level-0 tables (written
// with the compactor off, like a store of older options or one cut before
// a pass) is compacted below l0Compact after Open, and keeps its records.
func TestReopenCompactsLevel0(t *testing.T) {
	t.Parallel()
	o := testOptions(t)
	o.Sync = buffer.SyncNone
	o.MaxBytes = 1 << 30
	buffer.SetMemTableSize(&o, 256<<10)
	heavy := o
	buffer.DisableCompactor(&heavy)
	q, err := buffer.Open(heavy)
	if err != nil {
		t.Fatal(err)
	}
	const batches = 8 * (256 << 10) / 2048
	writeInline(t, q, batches, 2*time.Minute)
	// Wait for the flushes of the full memtables.
	deadline := time.Now().Add(time.Minute)
	for buffer.L0Tables(q) < 6 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	before := buffer.L0Tables(q)
	if before < 6 {
		t.Fatalf("setup: level 0 holds %d tables, want >= 6", before)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = mustOpen(t, o)
	deadline = time.Now().Add(time.Minute)
	for buffer.L0Tables(q) >= 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := buffer.L0Tables(q); n >= 4 {
		t.Fatalf("level 0 still holds %d tables a minute after Open (had %d)", n, before)
	}
	if s := q.Stats(); s.Records != batches*10 {
		t.Fatalf("Stats.Records = %d, want %d", s.Records, batches*10)
	}
}

// TestCloseDuringCompaction closes the queue as soon as a level-0
// compaction has started: Close waits for it, returns no error, leaves no
// goroutine behind (goleak in TestMain), and every appended record is
// there after a reopen.
func TestCloseDuringCompaction(t *testing.T) {
	t.Parallel()
	for round := range 3 {
		o := testOptions(t)
		o.Dir = t.TempDir() + "/queue"
		o.Sync = buffer.SyncNone
		o.MaxBytes = 1 << 30
		buffer.SetMemTableSize(&o, 256<<10)
		q, err := buffer.Open(o)
		if err != nil {
			t.Fatal(err)
		}
		data := make([][]byte, 10)
		for i := range data {
			data[i] = make([]byte, 200)
		}
		n := 0
		deadline := time.Now().Add(2 * time.Minute)
		for buffer.Compactions(q) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: no compaction after %d batches", round, n)
			}
			if _, err := q.AppendBatch(context.Background(), buffer.ClassTelemetry, data); err != nil {
				t.Fatal(err)
			}
			n++
		}
		if err := q.Close(); err != nil {
			t.Fatalf("round %d: Close during compaction: %v", round, err)
		}
		q = mustOpen(t, o)
		if s := q.Stats(); s.Records != int64(n*10) {
			t.Fatalf("round %d: %d records after reopen, want %d", round, s.Records, n*10)
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
