package buffer

import (
	"context"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestCorruptChunkDropped damages one chunk's value inside a healthy store:
// its records are dropped and counted, the rest of the queue is untouched,
// and a damaged gone set makes its chunk's records come back (at-least-once)
// instead of the store being moved aside.
func TestCorruptChunkDropped(t *testing.T) {
	t.Parallel()
	o := DefaultOptions(t.TempDir() + "/queue")
	o.LiveWindow = -1
	o.MinFree = -1
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = q.Close() }()
	batch := func(c Class, n int) []uint64 {
		data := make([][]byte, n)
		for i := range data {
			data[i] = []byte(strings.Repeat("x", 300))
		}
		seqs, err := q.AppendBatch(context.Background(), c, data)
		if err != nil {
			t.Fatal(err)
		}
		return seqs
	}
	batch(ClassTelemetry, 10)
	events := batch(ClassEvent, 5)
	overwrite(t, q.db, func(txn *badger.Txn) []byte {
		ci := newChunkIter(txn, ClassTelemetry)
		defer ci.close()
		ci.seek(0)
		return ci.item().KeyCopy(nil)
	}, []byte("garbage"))

	recs, err := q.Lease(100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 || recs[0].Seq != events[0] {
		t.Fatalf("leased %d records, want the 5 events", len(recs))
	}
	s := q.Stats()
	if s.Corrupt != 10 || s.Classes[ClassTelemetry].Records != 0 || !strings.Contains(s.Degraded, "corrupt") {
		t.Fatalf("after a corrupt chunk: corrupt %d, telemetry %d, degraded %q", s.Corrupt, s.Classes[ClassTelemetry].Records, s.Degraded)
	}
	// Ack one event out of order (a gone set is written), then damage it.
	if err := q.Ack(events[2]); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if q, err = Open(o); err != nil {
		t.Fatal(err)
	}
	if n := q.Stats().Records; n != 4 {
		t.Fatalf("after reopen %d records, want 4", n)
	}
	overwrite(t, q.db, func(*badger.Txn) []byte { return goneKey(ClassEvent, events[0]) }, []byte{goneVersion, 0xff})
	_ = q.Close()
	if q, err = Open(o); err != nil {
		t.Fatal(err)
	}
	s = q.Stats()
	if s.Records != 5 || !strings.Contains(s.Degraded, "gone set") {
		t.Fatalf("after a corrupt gone set: %d records, degraded %q; want all 5 events back", s.Records, s.Degraded)
	}
}

// overwrite replaces the value of the key find returns.
func overwrite(t *testing.T, db *badger.DB, find func(*badger.Txn) []byte, v []byte) {
	t.Helper()
	err := db.Update(func(txn *badger.Txn) error { return txn.Set(find(txn), v) })
	if err != nil {
		t.Fatal(err)
	}
}

// TestTornTailDropped simulates what a power cut leaves: the last commit's
// chunk key survived (memtable WAL) but its value did not. Open drops it
// as torn — its Append never returned, the commit was never synced —
// without marking the queue degraded; earlier records are untouched.
func TestTornTailDropped(t *testing.T) {
	t.Parallel()
	o := DefaultOptions(t.TempDir() + "/queue")
	o.Sync = SyncAlways
	o.LiveWindow = -1
	o.MinFree = -1
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	data := [][]byte{[]byte(strings.Repeat("a", 300)), []byte(strings.Repeat("b", 300))}
	synced, err := q.AppendBatch(context.Background(), ClassTelemetry, data)
	if err != nil {
		t.Fatal(err)
	}
	tail, err := q.AppendBatch(context.Background(), ClassTelemetry, data)
	if err != nil {
		t.Fatal(err)
	}
	overwrite(t, q.db, func(txn *badger.Txn) []byte {
		r, ok := findChunk(txn, ClassTelemetry, tail[0])
		if !ok {
			t.Fatal("tail chunk not found")
		}
		return chunkKey(ClassTelemetry, r)
	}, make([]byte, 40)) // zeros: a value page that never reached the disk
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if q, err = Open(o); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = q.Close() }()
	s := q.Stats()
	if s.Torn != 2 || s.Records != 2 || s.Degraded != "" || s.Corrupt != 0 {
		t.Fatalf("after a torn tail: torn %d, records %d, corrupt %d, degraded %q; want 2, 2, 0, none", s.Torn, s.Records, s.Corrupt, s.Degraded)
	}
	recs, err := q.Lease(10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Seq != synced[0] || recs[1].Seq != synced[1] {
		t.Fatalf("leased %v, want the synced records %v", seqsOf(recs), synced)
	}
}
