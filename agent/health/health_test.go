package health

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeClock is a manually advanced clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestHealthy(t *testing.T) {
	t.Parallel()
	const maxAge = 30 * time.Second
	tests := []struct {
		name    string
		setup   func(tr *Tracker, clk *fakeClock)
		wantOK  bool
		wantWhy string
	}{
		{
			name:    "empty",
			setup:   func(*Tracker, *fakeClock) {},
			wantOK:  true,
			wantWhy: "ok",
		},
		{
			name: "registration counts as a beat",
			setup: func(tr *Tracker, clk *fakeClock) {
				tr.Loop("batcher", true)
				clk.Advance(maxAge)
			},
			wantOK:  true,
			wantWhy: "ok",
		},
		{
			name: "critical loop silent too long",
			setup: func(tr *Tracker, clk *fakeClock) {
				l := tr.Loop("batcher", true)
				clk.Advance(10 * time.Second)
				l.Beat()
				clk.Advance(maxAge + time.Second)
			},
			wantOK:  false,
			wantWhy: "hung: batcher silent for 31s",
		},
		{
			name: "idle loop waiting for input is not hung",
			setup: func(tr *Tracker, clk *fakeClock) {
				l := tr.Loop("telemetry", true)
				l.Idle()
				clk.Advance(time.Hour)
			},
			wantOK:  true,
			wantWhy: "ok",
		},
		{
			name: "loop that hangs after leaving idle is hung",
			setup: func(tr *Tracker, clk *fakeClock) {
				l := tr.Loop("telemetry", true)
				l.Idle()
				clk.Advance(time.Hour)
				l.Beat() // woke up with input, then stuck
				clk.Advance(maxAge + time.Second)
			},
			wantOK:  false,
			wantWhy: "hung: telemetry silent for 31s",
		},
		{
			name: "beating loop stays healthy",
			setup: func(tr *Tracker, clk *fakeClock) {
				l := tr.Loop("uplink", true)
				for range 10 {
					clk.Advance(20 * time.Second)
					l.Beat()
				}
			},
			wantOK:  true,
			wantWhy: "ok",
		},
		{
			name: "non-critical loop never fails health",
			setup: func(tr *Tracker, clk *fakeClock) {
				tr.Loop("metrics", false)
				clk.Advance(time.Hour)
			},
			wantOK:  true,
			wantWhy: "ok",
		},
		{
			name: "closed loop is forgotten",
			setup: func(tr *Tracker, clk *fakeClock) {
				l := tr.Loop("driver/can0", true)
				l.Close()
				l.Close()
				l.Beat()
				clk.Advance(time.Hour)
			},
			wantOK:  true,
			wantWhy: "ok",
		},
		{
			name: "re-registered loop replaces the old handle",
			setup: func(tr *Tracker, clk *fakeClock) {
				old := tr.Loop("driver/can0", true)
				clk.Advance(time.Hour)
				tr.Loop("driver/can0", true)
				old.Close() // must not unregister the new one
				clk.Advance(maxAge + 2*time.Second)
			},
			wantOK:  false,
			wantWhy: "hung: driver/can0 silent for 32s",
		},
		{
			name: "several hung loops are all named",
			setup: func(tr *Tracker, clk *fakeClock) {
				tr.Loop("b", true)
				tr.Loop("a", true)
				clk.Advance(time.Minute)
			},
			wantOK:  false,
			wantWhy: "hung: a silent for 1m0s, b silent for 1m0s",
		},
		{
			name: "degraded is healthy but explained",
			setup: func(tr *Tracker, _ *fakeClock) {
				tr.SetDegraded("mqtt", "disconnected")
				tr.SetDegraded("buffer", "full: dropping oldest")
				tr.SetDegraded("gnss", "no fix")
				tr.Clear("gnss")
				tr.Clear("never-set")
			},
			wantOK:  true,
			wantWhy: "degraded: buffer: full: dropping oldest; mqtt: disconnected",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := newFakeClock()
			tr := New(clk.Now)
			tt.setup(tr, clk)
			ok, why := tr.Healthy(maxAge)
			if ok != tt.wantOK || why != tt.wantWhy {
				t.Errorf("Healthy() = %v, %q; want %v, %q", ok, why, tt.wantOK, tt.wantWhy)
			}
		})
	}
}

func TestSnapshot(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	t0 := clk.Now()
	tr := New(clk.Now)
	tr.Loop("uplink", true)
	clk.Advance(5 * time.Second)
	tr.Loop("metrics", false)
	tr.SetDegraded("mqtt", "disconnected")
	clk.Advance(5 * time.Second)
	tr.SetDegraded("mqtt", "disconnected") // same reason keeps Since

	want := Snapshot{
		Taken: t0.Add(10 * time.Second),
		Loops: []LoopState{
			{Name: "metrics", Critical: false, LastBeat: t0.Add(5 * time.Second), Age: 5 * time.Second},
			{Name: "uplink", Critical: true, LastBeat: t0, Age: 10 * time.Second},
		},
		Degraded: []Degradation{{Component: "mqtt", Reason: "disconnected", Since: t0.Add(5 * time.Second)}},
	}
	if diff := cmp.Diff(want, tr.Snapshot()); diff != "" {
		t.Errorf("Snapshot() mismatch (-want +got):\n%s", diff)
	}

	tr.SetDegraded("mqtt", "tls handshake failed") // new reason, new Since
	if got := tr.Snapshot().Degraded[0].Since; !got.Equal(t0.Add(10 * time.Second)) {
		t.Errorf("Since after reason change = %v, want %v", got, t0.Add(10*time.Second))
	}
}

func TestNewNilClock(t *testing.T) {
	t.Parallel()
	tr := New(nil)
	l := tr.Loop("x", true)
	l.Beat()
	if ok, why := tr.Healthy(time.Minute); !ok {
		t.Errorf("Healthy() = false, %q; want true", why)
	}
	if got := l.Name(); got != "x" {
		t.Errorf("Name() = %q, want x", got)
	}
}

// TestConcurrent exercises the Tracker from many goroutines under -race.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	tr := New(nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := tr.Loop(string(rune('a'+i)), i%2 == 0)
			for range 200 {
				l.Beat()
				tr.SetDegraded("c", "r")
				tr.Healthy(time.Second)
				tr.Clear("c")
			}
			l.Close()
		}()
	}
	wg.Wait()
	if n := len(tr.Snapshot().Loops); n != 0 {
		t.Errorf("loops after Close = %d, want 0", n)
	}
}
