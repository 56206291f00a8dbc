package backoff

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestNominal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p       Policy
		attempt int
		want    time.Duration
	}{
		{Policy{Base: 100 * time.Millisecond, Max: time.Second}, 0, 100 * time.Millisecond},
		{Policy{Base: 100 * time.Millisecond, Max: time.Second}, 3, 800 * time.Millisecond},
		{Policy{Base: 100 * time.Millisecond, Max: time.Second}, 4, time.Second},
		{Policy{Base: 100 * time.Millisecond, Max: time.Second}, 1000, time.Second},
		{Policy{Base: 100 * time.Millisecond, Max: time.Second}, -5, 100 * time.Millisecond},
		{Policy{Base: time.Hour, Max: 1 << 62}, 40, 1 << 62}, // Base<<30 overflows: capped, not wrapped
		{Policy{Base: 1 << 40, Max: 1 << 62}, 30, 1 << 62},   // wraps to a positive value: still capped
		{Policy{Base: time.Second, Max: 0}, 2, 0},            // no Max: no delay
		{Policy{Base: time.Second, Max: time.Millisecond}, 0, time.Millisecond},
	}
	for _, tt := range tests {
		if got := tt.p.Nominal(tt.attempt); got != tt.want {
			t.Errorf("%+v.Nominal(%d) = %v, want %v", tt.p, tt.attempt, got, tt.want)
		}
	}
}

// TestDelayBounds drives Rand to both ends of its range and checks the
// jitter window of each Spread.
func TestDelayBounds(t *testing.T) {
	t.Parallel()
	low := func(int64) int64 { return 0 }
	high := func(n int64) int64 { return n - 1 }
	const d = time.Second // nominal delay of attempt 3 below
	tests := []struct {
		spread   float64
		min, max time.Duration
	}{
		{0, 0, d},
		{0.25, 750 * time.Millisecond, 1250 * time.Millisecond},
		{0.5, 500 * time.Millisecond, 1500 * time.Millisecond},
		{1, 0, 2 * d},
		{7, 0, 2 * d}, // clamped to 1
	}
	for _, tt := range tests {
		p := Policy{Base: d / 8, Max: time.Minute, Spread: tt.spread}
		p.Rand = low
		if got := p.Delay(3); got != tt.min {
			t.Errorf("spread %v: lowest delay = %v, want %v", tt.spread, got, tt.min)
		}
		p.Rand = high
		if got := p.Delay(3); got != tt.max-1 {
			t.Errorf("spread %v: highest delay = %v, want %v", tt.spread, got, tt.max-1)
		}
		p.Rand = nil
		for range 1000 {
			if got := p.Delay(3); got < tt.min || got >= tt.max {
				t.Fatalf("spread %v: delay %v outside [%v, %v)", tt.spread, got, tt.min, tt.max)
			}
		}
	}
	if got := (Policy{}).Delay(5); got != 0 {
		t.Errorf("zero Policy delay = %v, want 0", got)
	}
}

func TestBackoffNextReset(t *testing.T) {
	t.Parallel()
	b := New(100*time.Millisecond, time.Second)
	var ceilings []time.Duration
	b.Rand = func(n int64) int64 { ceilings = append(ceilings, time.Duration(n)); return n - 1 }
	for range 6 {
		b.Next()
	}
	want := []time.Duration{100e6, 200e6, 400e6, 800e6, 1e9, 1e9}
	for i, w := range want {
		if ceilings[i] != w {
			t.Errorf("attempt %d ceiling = %v, want %v", i, ceilings[i], w)
		}
	}
	if b.Attempt() != 6 {
		t.Errorf("Attempt() = %d, want 6", b.Attempt())
	}
	b.Reset()
	if b.Attempt() != 0 {
		t.Error("Reset did not reset")
	}
	if b.Next(); ceilings[len(ceilings)-1] != 100e6 {
		t.Errorf("first delay after Reset drawn from [0, %v), want [0, 100ms)", ceilings[len(ceilings)-1])
	}
}

func TestSleep(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep on a cancelled context = %v, want context.Canceled", err)
	}
	if err := Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep(0) on a cancelled context = %v, want context.Canceled", err)
	}
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("Sleep(1ms) = %v, want nil", err)
	}
	if err := Sleep(context.Background(), -time.Second); err != nil {
		t.Errorf("Sleep(<0) = %v, want nil", err)
	}
	if Wait(ctx, time.Hour) {
		t.Error("Wait on a cancelled context reported a full delay")
	}
	if !Wait(context.Background(), time.Millisecond) {
		t.Error("Wait(1ms) did not complete")
	}
	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Sleep(ctx, time.Hour) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Sleep cancelled while waiting = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Sleep did not return after cancel")
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
