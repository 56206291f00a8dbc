package agent

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/signals"
	"github.com/tcu-agent/tcu-agent/drivers"
)

// TestFeedSignalsIdle: the shadow feed runs once at start and then only
// after the signal table changes, coalesced to one pass per interval; it
// used to run every second whether anything changed or not.
func TestFeedSignalsIdle(t *testing.T) {
	t.Parallel()
	sig := signals.New()
	sig.Set(drivers.Sample{Name: "Vehicle.Speed", Value: 0})
	var mu sync.Mutex
	var got []any
	update := func(_ string, v any) {
		mu.Lock()
		got = append(got, v)
		mu.Unlock()
	}
	n := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		feedSignals(ctx, sig, []string{"Vehicle.Speed"}, update, 5*time.Millisecond)
	}()
	defer func() { cancel(); <-done }()

	waitFor(t, func() bool { return n() == 1 })
	time.Sleep(100 * time.Millisecond) // 20 intervals, nothing changed
	if k := n(); k != 1 {
		t.Fatalf("%d passes over an unchanged signal table, want 1", k)
	}
	for i := range 50 { // a burst: coalesced into one or two passes
		sig.Set(drivers.Sample{Name: "Vehicle.Speed", Value: float64(i + 1)})
	}
	waitFor(t, func() bool { return n() >= 2 })
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(got) > 3 || got[len(got)-1] != 50.0 {
		t.Fatalf("after a burst of 50 changes: %d passes, last value %v; want <= 3 passes ending at 50", len(got), got[len(got)-1])
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
