package telemetry

import (
	"context"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
)

// TestSetInterval: a profile switches the interval at run time. Pending
// values are written at the switch, then every new interval.
func TestSetInterval(t *testing.T) {
	t.Parallel()
	st := &memStore{}
	p, err := New(Options{Interval: time.Hour, Append: st.append})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitRecords := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for len(st.snapshot()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d records, want %d", len(st.snapshot()), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	p.Emit(drivers.Sample{Name: "Speed", Value: 1, Time: time.Now()})
	deadline := time.Now().Add(5 * time.Second)
	for len(p.in) > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	p.SetInterval(20 * time.Millisecond) // the pending value goes out at the switch
	waitRecords(1)
	if p.Interval() != 20*time.Millisecond {
		t.Errorf("Interval = %v", p.Interval())
	}
	p.Emit(drivers.Sample{Name: "Speed", Value: 2, Time: time.Now()})
	waitRecords(2) // within the new 20 ms interval, not the hour
	p.SetInterval(0)
	if p.Interval() != time.Hour {
		t.Errorf("SetInterval(0) = %v, want the configured hour", p.Interval())
	}
}
