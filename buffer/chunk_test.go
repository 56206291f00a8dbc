package buffer

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestChunkGoneSets acks records out of order inside chunks, evicts part of
// a chunk, and checks drain order, counters and that a reopen keeps exactly
// the records that were not gone.
func TestChunkGoneSets(t *testing.T) {
	t.Parallel()
	q, o := openInternal(t, 40)
	var err error
	defer func() { _ = q.Close() }()

	var want [NumClasses][]uint64
	for _, c := range []Class{ClassTelemetry, ClassEvent, ClassCritical} {
		data := make([][]byte, 10)
		for i := range data {
			data[i] = []byte{byte(c), byte(i)}
		}
		seqs, err := q.AppendBatch(context.Background(), c, data)
		if err != nil {
			t.Fatal(err)
		}
		want[c] = seqs
	}
	leaseOrder := func() [NumClasses][]uint64 {
		t.Helper()
		recs := leaseRelease(t, q)
		for _, r := range recs {
			if r.Data[0] != byte(r.Class) {
				t.Fatalf("seq %d: data %v in class %v", r.Seq, r.Data, r.Class)
			}
		}
		return byClass(recs)
	}
	if diff := cmp.Diff(want, leaseOrder()); diff != "" {
		t.Fatalf("lease order (-want +got):\n%s", diff)
	}

	// Ack every other telemetry record (holes inside one chunk), the last
	// event first and then the first two (out of order).
	var even, odd []uint64
	for i, s := range want[ClassTelemetry] {
		if i%2 == 0 {
			even = append(even, s)
		} else {
			odd = append(odd, s)
		}
	}
	for _, acks := range [][]uint64{even, want[ClassEvent][9:], want[ClassEvent][:2]} {
		if err := q.Ack(acks...); err != nil {
			t.Fatal(err)
		}
	}
	want[ClassTelemetry], want[ClassEvent] = odd, want[ClassEvent][2:9]
	if diff := cmp.Diff(want, leaseOrder()); diff != "" {
		t.Fatalf("after acks (-want +got):\n%s", diff)
	}
	if s := q.Stats(); s.Records != 22 || s.Classes[ClassTelemetry].Bytes != 5*(2+RecordOverhead) {
		t.Fatalf("after acks: %d records, %d telemetry bytes; want 22, %d", s.Records, s.Classes[ClassTelemetry].Bytes, 5*(2+RecordOverhead))
	}
	q.collect()

	// Overfill MaxRecords: the 5 remaining telemetry records go first,
	// then the 3 oldest events.
	for range 26 {
		s, err := q.Append(context.Background(), ClassCritical, []byte{0, 1})
		if err != nil {
			t.Fatal(err)
		}
		want[ClassCritical] = append(want[ClassCritical], s)
	}
	want[ClassTelemetry], want[ClassEvent] = nil, want[ClassEvent][3:]
	if diff := cmp.Diff(want, leaseOrder()); diff != "" {
		t.Fatalf("after eviction (-want +got):\n%s", diff)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if q, err = Open(o); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, leaseOrder()); diff != "" {
		t.Fatalf("after reopen (-want +got):\n%s", diff)
	}
	s := q.Stats()
	if s.Records != 40 || s.Classes[ClassTelemetry].Evicted != 0 || s.Classes[ClassEvent].Records != 4 {
		t.Fatalf("after reopen: %+v", s)
	}
}
