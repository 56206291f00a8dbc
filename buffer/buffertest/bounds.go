package buffertest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/buffer"
)

// Bounds cases of the suite: eviction order, shedding, byte cap and TTL.

func testEviction(t *testing.T, open Opener) {
	o := options(t, NewClock(t0))
	o.MaxRecords = 4
	q := openQ(t, open, o)
	appendAll(t, q, entry{c2, "t1"}, entry{c1, "e1"}, entry{c2, "t2"}, entry{c1, "e2"})
	// Full: each append evicts the oldest record of the lowest class.
	appendAll(t, q, entry{c0, "r1"}, entry{c1, "e3"}, entry{c0, "r2"})
	got, _ := lease(t, q, 10, 0)
	wantEntries(t, "after eviction", []entry{{c0, "r1"}, {c0, "r2"}, {c1, "e2"}, {c1, "e3"}}, got)
	s := q.Stats()
	if s.Classes[c2].Evicted != 2 || s.Classes[c1].Evicted != 1 || s.Classes[c0].Evicted != 0 {
		t.Fatalf("Evicted = %d/%d/%d (critical/event/telemetry), want 0/1/2",
			s.Classes[c0].Evicted, s.Classes[c1].Evicted, s.Classes[c2].Evicted)
	}
	// Telemetry cannot evict events or critical records: it is shed.
	if _, err := q.Append(context.Background(), c2, []byte("t3")); !errors.Is(err, buffer.ErrFull) {
		t.Fatalf("Append telemetry into a full queue of events = %v, want ErrFull", err)
	}
	if s := q.Stats(); s.Classes[c2].Shed != 1 {
		t.Fatalf("Shed telemetry = %d, want 1", s.Classes[c2].Shed)
	}
}

func testCriticalNeverEvicted(t *testing.T, open Opener) {
	o := options(t, NewClock(t0))
	o.MaxRecords = 3
	q := openQ(t, open, o)
	appendAll(t, q, entry{c0, "r1"}, entry{c2, "t1"}, entry{c0, "r2"})
	appendAll(t, q, entry{c0, "r3"}) // evicts t1, not r1
	appendAll(t, q, entry{c0, "r4"}) // only critical left: oldest critical goes
	got, _ := lease(t, q, 10, 0)
	wantEntries(t, "Lease", []entry{{c0, "r2"}, {c0, "r3"}, {c0, "r4"}}, got)
	if s := q.Stats(); s.Classes[c0].Evicted != 1 || s.Classes[c2].Evicted != 1 {
		t.Fatalf("Evicted critical %d telemetry %d, want 1 and 1", s.Classes[c0].Evicted, s.Classes[c2].Evicted)
	}
}

func testByteCap(t *testing.T, open Opener) {
	o := options(t, NewClock(t0))
	o.MaxBytes = 10 * (buffer.RecordOverhead + 100) // ten 100-byte records
	q := openQ(t, open, o)
	data := string(make([]byte, 100))
	for range 25 {
		appendAll(t, q, entry{c2, data})
	}
	s := q.Stats()
	if s.Records != 10 || s.Bytes > o.MaxBytes || s.Classes[c2].Evicted != 15 {
		t.Fatalf("Stats = %d records, %d bytes, %d evicted; want 10, <= %d, 15", s.Records, s.Bytes, s.Classes[c2].Evicted, o.MaxBytes)
	}
	if _, err := q.Append(context.Background(), c2, make([]byte, 2000)); !errors.Is(err, buffer.ErrTooLarge) {
		t.Fatalf("Append larger than MaxBytes = %v, want ErrTooLarge", err)
	}
}

func testTTL(t *testing.T, open Opener) {
	clk := NewClock(t0)
	o := options(t, clk)
	o.TTL = map[buffer.Class]time.Duration{c2: time.Minute}
	q := openQ(t, open, o)
	appendAll(t, q, entry{c2, "old"}, entry{c1, "event"})
	clk.Advance(2 * time.Minute)
	appendAll(t, q, entry{c2, "new"})
	got, seqs := lease(t, q, 10, 0)
	wantEntries(t, "Lease", []entry{{c1, "event"}, {c2, "new"}}, got)
	q.Release(seqs...)
	waitFor(t, "ttl sweep", func() bool { return q.Stats().Classes[c2].Expired == 1 })
	if s := q.Stats(); s.Classes[c2].Records != 1 {
		t.Fatalf("telemetry records after expiry = %d, want 1", s.Classes[c2].Records)
	}
}
