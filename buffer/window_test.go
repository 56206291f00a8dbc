package buffer_test

import (
	"context"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/buffer"
)

// TestGroupWindowAdaptive: under SyncGroup, within a stream of appends, a
// window that holds less than GroupFill bytes runs until GroupMaxWindow;
// GroupFill bytes or a critical record end it early; a lone append (none
// committed for longer than GroupMaxWindow, or the first) commits at
// GroupWindow; the Append returns only after the sync.
func TestGroupWindowAdaptive(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		max     time.Duration
		fill    int64
		class   buffer.Class
		size    int
		lone    bool          // no append before: not part of a stream
		atLeast time.Duration // timers never fire early: a hard bound
		atMost  time.Duration // generous: the machine is loaded
	}{
		{"small record waits for the max window", 400 * time.Millisecond, 1 << 20, buffer.ClassTelemetry, 200, false, 400 * time.Millisecond, 0},
		{"filled window ends early", buffer.LimitGroupMaxWindow, 4 << 10, buffer.ClassTelemetry, 8 << 10, false, buffer.DefaultGroupWindow, 1500 * time.Millisecond},
		{"critical record ends it at once", buffer.LimitGroupMaxWindow, 1 << 20, buffer.ClassCritical, 200, false, 0, 1500 * time.Millisecond},
		{"max below window: fixed window", time.Millisecond, 1 << 20, buffer.ClassTelemetry, 200, false, buffer.DefaultGroupWindow, 4 * time.Second},
		{"lone record: min window", buffer.LimitGroupMaxWindow, 1 << 20, buffer.ClassTelemetry, 200, true, buffer.DefaultGroupWindow, 1500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := testOptions(t)
			o.Sync = buffer.SyncGroup
			o.GroupMaxWindow = tt.max
			o.GroupFill = tt.fill
			q := mustOpen(t, o)
			if !tt.lone { // a record just committed: this one is part of a stream
				if _, err := q.Append(context.Background(), buffer.ClassCritical, make([]byte, 10)); err != nil {
					t.Fatal(err)
				}
			}
			syncs := q.Stats().Syncs
			start := time.Now()
			if _, err := q.Append(context.Background(), tt.class, make([]byte, tt.size)); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			if got := q.Stats().Syncs - syncs; got != 1 {
				t.Errorf("%d syncs when Append returned, want 1", got)
			}
			if took < tt.atLeast || (tt.atMost > 0 && took > tt.atMost) {
				t.Errorf("Append took %v, want %v..%v", took, tt.atLeast, tt.atMost)
			}
		})
	}
}

// TestGroupWindowBatches: a producer shaped like the agent's telemetry
// pipeline (each AppendBatch carries what arrived while the previous one
// was blocked) gets few syncs at a low rate with the default options: the
// adaptive window, not the 20 ms one, sets the pace.
func TestGroupWindowBatches(t *testing.T) {
	t.Parallel()
	o := testOptions(t)
	o.Sync = buffer.SyncGroup
	o.GroupMaxWindow = buffer.DefaultGroupMaxWindow
	q := mustOpen(t, o)
	const rate, n = 200, 400 // records/s, 2 s
	rec := make([]byte, 200)
	start, produced := time.Now(), 0
	for produced < n {
		due := min(int(time.Since(start).Seconds()*rate)+1, n) - produced
		if due <= 0 {
			time.Sleep(time.Until(start.Add(time.Duration(produced) * time.Second / rate)))
			continue
		}
		batch := make([][]byte, due)
		for i := range batch {
			batch[i] = rec
		}
		if _, err := q.AppendBatch(context.Background(), buffer.ClassTelemetry, batch); err != nil {
			t.Fatal(err)
		}
		produced += due
	}
	elapsed := time.Since(start)
	// A fixed 20 ms window would sync ~50 times a second; the adaptive
	// one at most 1/GroupWindow, in practice 1/GroupMaxWindow here.
	maxSyncs := uint64(elapsed/buffer.DefaultGroupMaxWindow) + 2
	if s := q.Stats().Syncs; s > maxSyncs {
		t.Errorf("%d syncs for %d records in %v, want <= %d", s, n, elapsed, maxSyncs)
	}
	if got := len(leaseAll(t, q)); got != n {
		t.Errorf("leased %d records, want %d", got, n)
	}
}
