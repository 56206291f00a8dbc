package buffer_test

import (
	"testing"

	"github.com/tcu-agent/tcu-agent/buffer"
)

// TestLeaseClasses: records of refused classes stay unleased and come
// with a later lease that allows them.
func TestLeaseClasses(t *testing.T) {
	q := mustOpen(t, testOptions(t))
	tel := mustAppend(t, q, buffer.ClassTelemetry, "t")
	ev := mustAppend(t, q, buffer.ClassEvent, "e")
	crit := mustAppend(t, q, buffer.ClassCritical, "c")
	noTelemetry := func(c buffer.Class) bool { return c != buffer.ClassTelemetry }
	recs, err := q.LeaseClasses(10, 0, noTelemetry)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint64]bool{}
	for _, r := range recs {
		got[r.Seq] = true
	}
	if len(recs) != 2 || !got[ev] || !got[crit] {
		t.Fatalf("leased %v, want the event %d and the critical %d only", recs, ev, crit)
	}
	if recs, _ := q.LeaseClasses(10, 0, noTelemetry); len(recs) != 0 {
		t.Fatalf("second lease %v, want nothing", recs)
	}
	recs, err = q.LeaseClasses(10, 0, nil)
	if err != nil || len(recs) != 1 || recs[0].Seq != tel {
		t.Fatalf("lease of all classes: %v %v, want the telemetry record %d", recs, err, tel)
	}
}
