package buffer

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestChunksAcrossBuckets interleaves classes around key buckets (keys.go):
// chunks that start just before a bucket boundary and end after it, and a
// jump over a whole bucket. Drain order, acks of records nobody leased
// (found by seq), eviction and reopen must not notice the buckets.
func TestChunksAcrossBuckets(t *testing.T) {
	t.Parallel()
	q, o := openInternal(t, 60)
	var err error
	defer func() { _ = q.Close() }()
	q.mu.Lock()
	q.next = (q.next>>bucketBits+3)<<bucketBits - 7 // 7 seqs before a boundary
	q.mu.Unlock()

	var want [NumClasses][]uint64
	for i := range 9 {
		c := Class(i % 3)
		data := [][]byte{{byte(i)}, {byte(i)}, {byte(i)}, {byte(i)}}
		seqs, err := q.AppendBatch(context.Background(), c, data)
		if err != nil {
			t.Fatal(err)
		}
		want[c] = append(want[c], seqs...)
		if i == 4 { // jump a whole bucket: buckets may be empty
			q.mu.Lock()
			q.next += 1 << bucketBits
			q.mu.Unlock()
		}
	}
	leaseOrder := func() [NumClasses][]uint64 { return byClass(leaseRelease(t, q)) }
	if diff := cmp.Diff(want, leaseOrder()); diff != "" {
		t.Fatalf("lease order across buckets (-want +got):\n%s", diff)
	}
	// Ack (without a lease) all telemetry and every other event.
	var odd []uint64
	for i, s := range want[ClassEvent] {
		if i%2 == 0 {
			if err := q.Ack(s); err != nil {
				t.Fatal(err)
			}
		} else {
			odd = append(odd, s)
		}
	}
	if err := q.Ack(want[ClassTelemetry]...); err != nil {
		t.Fatal(err)
	}
	q.collect()
	want[ClassTelemetry], want[ClassEvent] = nil, odd
	if diff := cmp.Diff(want, leaseOrder()); diff != "" {
		t.Fatalf("after acks (-want +got):\n%s", diff)
	}
	// Overfill MaxRecords (60): the 6 remaining events go first.
	for range 48 {
		s, err := q.Append(context.Background(), ClassCritical, []byte("r"))
		if err != nil {
			t.Fatal(err)
		}
		want[ClassCritical] = append(want[ClassCritical], s)
	}
	want[ClassEvent] = nil
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
	if s := q.Stats(); s.Records != 60 {
		t.Fatalf("after reopen: %d records, want 60", s.Records)
	}
}
