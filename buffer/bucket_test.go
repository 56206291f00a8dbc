package buffer

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestBucketBoundary interleaves classes across record-key buckets (keys.go)
// and checks drain order, acks, segment drops, eviction and reopen.
func TestBucketBoundary(t *testing.T) {
	t.Parallel()
	o := DefaultOptions(t.TempDir() + "/queue")
	o.LiveWindow = -1
	o.MinFreeBytes = -1
	o.MaxRecords = 40
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = q.Close() }()
	q.mu.Lock()
	q.next = (q.next>>segBits+3)<<segBits - 7 // 7 seqs before a bucket boundary
	q.mu.Unlock()

	var want [NumClasses][]uint64
	for i := range 30 {
		c := Class(i % 3)
		s, err := q.Append(context.Background(), c, []byte{byte(i)})
		if err != nil {
			t.Fatal(err)
		}
		want[c] = append(want[c], s)
		if i == 14 { // jump a whole bucket: buckets may be sparse
			q.mu.Lock()
			q.next += 1 << segBits
			q.mu.Unlock()
		}
	}
	leaseOrder := func() [NumClasses][]uint64 {
		t.Helper()
		recs, err := q.Lease(100, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got [NumClasses][]uint64
		for _, r := range recs {
			got[r.Class] = append(got[r.Class], r.Seq)
		}
		seqs := make([]uint64, len(recs))
		for i, r := range recs {
			seqs[i] = r.Seq
		}
		q.Release(seqs...)
		return got
	}
	if diff := cmp.Diff(want, leaseOrder()); diff != "" {
		t.Fatalf("lease order across buckets (-want +got):\n%s", diff)
	}

	// Ack all telemetry and half the events, then drop segments.
	if err := q.Ack(want[2]...); err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(want[1][:5]...); err != nil {
		t.Fatal(err)
	}
	q.collect()
	want[2], want[1] = nil, want[1][5:]
	if diff := cmp.Diff(want, leaseOrder()); diff != "" {
		t.Fatalf("after acks and drops (-want +got):\n%s", diff)
	}

	// Overfill MaxRecords: the 5 events go first (no telemetry left).
	for range 30 {
		s, err := q.Append(context.Background(), ClassCritical, []byte("r"))
		if err != nil {
			t.Fatal(err)
		}
		want[0] = append(want[0], s)
	}
	want[1] = nil
	if diff := cmp.Diff(want, leaseOrder()); diff != "" {
		t.Fatalf("after eviction (-want +got):\n%s", diff)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q, err = Open(o)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, leaseOrder()); diff != "" {
		t.Fatalf("after reopen (-want +got):\n%s", diff)
	}
	if s := q.Stats(); s.Records != 40 {
		t.Fatalf("after reopen: %d records, want 40", s.Records)
	}
}
