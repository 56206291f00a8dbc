package buffer

import "testing"

// openInternal opens an on-disk queue for the package's internal tests:
// pure oldest-first drain order, no disk check, maxRecords as the record
// cap. It returns the options for reopening.
func openInternal(t *testing.T, maxRecords int64) (*Queue, Options) {
	t.Helper()
	o := DefaultOptions(t.TempDir() + "/queue")
	o.LiveWindow = -1
	o.MinFree = -1
	o.MaxRecords = maxRecords
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return q, o
}

// leaseRelease leases up to 100 records and releases them again.
func leaseRelease(t *testing.T, q *Queue) []Record {
	t.Helper()
	recs, err := q.Lease(100, 0)
	if err != nil {
		t.Fatal(err)
	}
	q.Release(seqsOf(recs)...)
	return recs
}

// byClass returns the seqs of recs per class, in lease order.
func byClass(recs []Record) [NumClasses][]uint64 {
	var got [NumClasses][]uint64
	for _, r := range recs {
		got[r.Class] = append(got[r.Class], r.Seq)
	}
	return got
}

func seqsOf(recs []Record) []uint64 {
	s := make([]uint64, len(recs))
	for i, r := range recs {
		s[i] = r.Seq
	}
	return s
}
