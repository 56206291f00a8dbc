package agent

import (
	"cmp"
	"slices"

	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/buffer"
)

// uplinkQueue adapts the buffer to the interface the MQTT session consumes
// (the uplink declares its own Record and Class so that it does not depend
// on the buffer package).
type uplinkQueue struct{ q *buffer.Queue }

var classToUplink = map[buffer.Class]uplink.Class{
	buffer.ClassCritical:  uplink.ClassCritical,
	buffer.ClassEvent:     uplink.ClassEvent,
	buffer.ClassTelemetry: uplink.ClassTelemetry,
}

func (u uplinkQueue) Lease(max, maxBytes int) ([]uplink.Record, error) {
	recs, err := u.q.Lease(max, maxBytes)
	if err != nil || len(recs) == 0 {
		return nil, err
	}
	// The buffer picks which records go first (live before backlog, which
	// it serves newest first); within one lease, put them back in seq order
	// per class so every message lists its records in ascending seq.
	slices.SortStableFunc(recs, func(a, b buffer.Record) int {
		if a.Class != b.Class {
			return cmp.Compare(a.Class, b.Class)
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
	out := make([]uplink.Record, len(recs))
	for i, r := range recs {
		out[i] = uplink.Record{Seq: r.Seq, Class: classToUplink[r.Class], Time: r.Time, Data: r.Data}
	}
	return out, nil
}

func (u uplinkQueue) Ack(seqs ...uint64) error { return u.q.Ack(seqs...) }
func (u uplinkQueue) Release(seqs ...uint64)   { u.q.Release(seqs...) }
func (u uplinkQueue) Ready() <-chan struct{}   { return u.q.Ready() }
