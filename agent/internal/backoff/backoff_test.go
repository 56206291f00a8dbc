package backoff

import (
	"context"
	"testing"
	"time"
)

func TestNextIsCappedAndJittered(t *testing.T) {
	t.Parallel()
	b := New(100*time.Millisecond, time.Second)
	var ceilings []int64
	b.rand = func(n int64) int64 { ceilings = append(ceilings, n-1); return n - 1 }
	for range 6 {
		b.Next()
	}
	want := []time.Duration{100e6, 200e6, 400e6, 800e6, 1e9, 1e9}
	for i, w := range want {
		if time.Duration(ceilings[i]) != w {
			t.Errorf("attempt %d ceiling = %v, want %v", i, time.Duration(ceilings[i]), w)
		}
	}
	b.Reset()
	if b.Attempt() != 0 {
		t.Error("Reset did not reset")
	}
	b.rand = nil
	for range 1000 {
		if d := b.Next(); d < 0 || d > time.Second {
			t.Fatalf("delay %v out of [0, 1s]", d)
		}
	}
}

func TestWaitCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Wait(ctx, time.Hour) {
		t.Error("Wait on a cancelled context reported a full delay")
	}
	if !Wait(context.Background(), time.Millisecond) {
		t.Error("Wait(1ms) did not complete")
	}
}
