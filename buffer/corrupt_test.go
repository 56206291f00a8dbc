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
	o.MinFreeBytes = -1
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
