package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tcu-agent/tcu-agent/agent/record"
	"github.com/tcu-agent/tcu-agent/drivers"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memStore is a fake buffer with a fault knob.
type memStore struct {
	mu      sync.Mutex
	recs    []stored
	failing error
	calls   int
}

type stored struct {
	class Class
	rec   record.Record
}

func (m *memStore) append(_ context.Context, c Class, data [][]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.failing != nil {
		return m.failing
	}
	for _, d := range data {
		r, err := record.Unmarshal(d)
		if err != nil {
			return err
		}
		m.recs = append(m.recs, stored{c, r})
	}
	return nil
}

func (m *memStore) snapshot() []stored {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]stored(nil), m.recs...)
}

func TestPipelineBatchesAndEvents(t *testing.T) {
	t.Parallel()
	st := &memStore{}
	var observed sync.Map
	p, err := New(Options{
		Interval: time.Hour, // flushed by shutdown only
		Events:   []string{"Lock"},
		Append:   st.append,
		Observe:  func(s drivers.Sample) { observed.Store(s.Name, s.Value) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	t0 := time.UnixMilli(1_700_000_000_000)
	p.Emit(drivers.Sample{Name: "Speed", Value: 10, Time: t0})
	p.Emit(drivers.Sample{Name: "Speed", Value: 12, Time: t0.Add(time.Millisecond)})
	p.Emit(drivers.Sample{Name: "Lock", Value: 0, Label: "UNLOCKED", Time: t0})
	p.Emit(drivers.Sample{Name: "Lock", Value: 0, Label: "UNLOCKED", Time: t0}) // no change: no event
	p.Emit(drivers.Sample{Name: "Lock", Value: 1, Label: "LOCKED", Time: t0.Add(2 * time.Millisecond)})
	// Wait until the pipeline took every sample, then stop it.
	deadline := time.Now().Add(5 * time.Second)
	for len(p.in) > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	recs := st.snapshot()
	var kinds []string
	for _, r := range recs {
		kinds = append(kinds, r.rec.Kind)
	}
	if diff := cmp.Diff([]string{"event", "event", "telemetry"}, kinds); diff != "" {
		t.Fatalf("record kinds (-want +got):\n%s", diff)
	}
	var tb telemetryBody
	if err := json.Unmarshal(recs[2].rec.Body, &tb); err != nil {
		t.Fatal(err)
	}
	want := telemetryBody{Signals: map[string]float64{"Speed": 12, "Lock": 1}, Labels: map[string]string{"Lock": "LOCKED"}}
	if diff := cmp.Diff(want, tb); diff != "" {
		t.Errorf("telemetry body (-want +got):\n%s", diff)
	}
	if recs[2].class != ClassTelemetry || recs[0].class != ClassEvent {
		t.Errorf("classes = %v, %v", recs[2].class, recs[0].class)
	}
	if !recs[2].rec.Time.Equal(t0.Add(2 * time.Millisecond)) {
		t.Errorf("telemetry ts = %v, want newest sample time", recs[2].rec.Time)
	}
	var ev eventBody
	if err := json.Unmarshal(recs[1].rec.Body, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Value != 1 || ev.Previous == nil || *ev.Previous != 0 || ev.Label != "LOCKED" {
		t.Errorf("second event = %+v", ev)
	}
	if v, _ := observed.Load("Speed"); v != 12.0 {
		t.Errorf("observed Speed = %v", v)
	}
}

func TestEmitNeverBlocks(t *testing.T) {
	t.Parallel()
	st := &memStore{}
	p, err := New(Options{MaxPending: 4, Append: st.append})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 { // Run not started: the channel fills up
		p.Emit(drivers.Sample{Name: "x", Value: float64(i)})
	}
	if got := p.Stats().Dropped; got != 6 {
		t.Errorf("Dropped = %d, want 6", got)
	}
}

func TestAppendFailureCounted(t *testing.T) {
	t.Parallel()
	st := &memStore{failing: errors.New("disk full")}
	p, err := New(Options{Interval: 10 * time.Millisecond, Append: st.append})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	p.Emit(drivers.Sample{Name: "x", Value: 1})
	deadline := time.Now().Add(5 * time.Second)
	for p.Stats().Failed == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if p.Stats().Failed == 0 || p.Stats().Records != 0 {
		t.Errorf("stats = %+v", p.Stats())
	}
}

// TestBurstIsOneBatch checks that a burst of event samples is appended in
// a few batches, not one append (one sync) per record.
func TestBurstIsOneBatch(t *testing.T) {
	t.Parallel()
	st := &memStore{}
	p, err := New(Options{Interval: time.Hour, Events: []string{"Door"}, MaxPending: 1000, Append: st.append})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 { // queued before Run starts: one burst
		p.Emit(drivers.Sample{Name: "Door", Value: float64(i % 2)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for p.Stats().Records < 500 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	st.mu.Lock()
	defer st.mu.Unlock()
	events := 0
	for _, r := range st.recs {
		if r.rec.Kind == "event" {
			events++
		}
	}
	if events != 500 {
		t.Fatalf("events appended = %d, want 500", events)
	}
	if st.calls > 4 {
		t.Errorf("500 events took %d append calls, want at most 4 (batches of %d)", st.calls, maxBatch)
	}
}

// TestStopDuringSlowAppendLosesNothing stops the pipeline while an append
// is in flight on a slow store: the append is not cancelled by the stop,
// and every sample emitted before the stop is written (the bug was
// "append batch: context canceled" dropping them).
func TestStopDuringSlowAppendLosesNothing(t *testing.T) {
	t.Parallel()
	st := &memStore{}
	entered := make(chan struct{}, 16)
	release := make(chan struct{})
	slow := func(ctx context.Context, c Class, data [][]byte) error {
		entered <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return st.append(ctx, c, data)
	}
	p, err := New(Options{Interval: time.Hour, Events: []string{"Door"}, Append: slow})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	p.Emit(drivers.Sample{Name: "Door", Value: 1})
	<-entered // the first append is in flight
	for i := range 10 {
		p.Emit(drivers.Sample{Name: "Door", Value: float64(i % 2)})
	}
	cancel()
	time.Sleep(50 * time.Millisecond) // the stop is seen while the append blocks
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var events int
	for _, r := range st.snapshot() {
		if r.rec.Kind == "event" {
			events++
		}
	}
	// 1 + the changes among the 10 (0,1,0,1,...: the first 0 is a change).
	if events != 11 || p.Stats().Failed != 0 {
		t.Errorf("events stored = %d (want 11), stats %+v", events, p.Stats())
	}
}

// TestStopGraceBoundsAHungStore: a store that never answers holds the stop
// up for StopGrace, not forever, and the loss is counted.
func TestStopGraceBoundsAHungStore(t *testing.T) {
	t.Parallel()
	hung := func(ctx context.Context, _ Class, _ [][]byte) error {
		<-ctx.Done()
		return ctx.Err()
	}
	p, err := New(Options{Interval: time.Hour, Events: []string{"Door"}, Append: hung, StopGrace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	p.Emit(drivers.Sample{Name: "Door", Value: 1})
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after StopGrace")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("stop took %v with a 100ms grace", took)
	}
	if p.Stats().Failed == 0 {
		t.Errorf("lost records not counted: %+v", p.Stats())
	}
}

// TestSeedSuppressesUnchangedEvent: a pipeline seeded with the latest
// values (one replacing another at run time) reports no event for an event
// signal whose value did not change, and reports a change with its
// previous value.
func TestSeedSuppressesUnchangedEvent(t *testing.T) {
	t.Parallel()
	t0 := time.UnixMilli(1_700_000_000_000)
	for _, tc := range []struct {
		name       string
		seed       []drivers.Sample
		wantEvents int
	}{
		{"unseeded", nil, 2},
		{"seeded", []drivers.Sample{{Name: "Lock", Value: 1, Time: t0}, {Name: "Speed", Value: 3, Time: t0}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &memStore{}
			p, err := New(Options{Interval: time.Hour, Events: []string{"Lock"}, Append: st.append, Seed: tc.seed})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- p.Run(ctx) }()
			p.Emit(drivers.Sample{Name: "Lock", Value: 1, Time: t0.Add(time.Second)}) // as seeded
			p.Emit(drivers.Sample{Name: "Lock", Value: 0, Time: t0.Add(2 * time.Second)})
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			var events []string
			for _, s := range st.snapshot() {
				if s.class == ClassEvent {
					events = append(events, string(s.rec.Body))
				}
			}
			if len(events) != tc.wantEvents {
				t.Fatalf("events %q, want %d", events, tc.wantEvents)
			}
			if !strings.Contains(events[len(events)-1], `"previous":1`) {
				t.Errorf("the change has no previous value: %s", events[len(events)-1])
			}
		})
	}
}

// TestIdlePipelineDoesNotWake: with no samples the pipeline blocks without
// a timer (it used to tick every interval to flush nothing); it says so
// through the idle hook, and one sample still becomes one record within
// about an interval, after which it goes idle again.
func TestIdlePipelineDoesNotWake(t *testing.T) {
	t.Parallel()
	store := &memStore{}
	p, err := New(Options{Interval: 5 * time.Millisecond, Append: store.append})
	if err != nil {
		t.Fatal(err)
	}
	var beats, idles atomic.Int64
	p.SetHeartbeat(func() { beats.Add(1) })
	p.SetIdle(func() { idles.Add(1) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitUntil(t, func() bool { return idles.Load() == 1 })
	time.Sleep(100 * time.Millisecond) // 20 intervals
	if n := beats.Load(); n != 1 {
		t.Fatalf("idle pipeline ran %d loop iterations in 20 intervals, want 1 (no wake-ups)", n)
	}
	p.Emit(drivers.Sample{Name: "Vehicle.Speed", Value: 1, Time: time.Now()})
	waitUntil(t, func() bool { return len(store.snapshot()) == 1 })
	waitUntil(t, func() bool { return idles.Load() == 3 }) // waiting on the flush timer, then on nothing
	b := beats.Load()
	time.Sleep(100 * time.Millisecond)
	if n := beats.Load() - b; n != 0 {
		t.Fatalf("pipeline woke %d times after its record with nothing pending", n)
	}
}

// TestWaitOnFlushTimerIsIdle: a pipeline whose interval is longer than the
// watchdog's (a parked profile's minute against WatchdogSec=30s) waits on
// its flush timer marked idle, so the health tracker does not call it hung
// and the watchdog does not restart a healthy agent.
func TestWaitOnFlushTimerIsIdle(t *testing.T) {
	t.Parallel()
	store := &memStore{}
	p, err := New(Options{Interval: time.Hour, Append: store.append})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var last string
	var beats atomic.Int64
	p.SetHeartbeat(func() { mu.Lock(); last = "beat"; mu.Unlock(); beats.Add(1) })
	p.SetIdle(func() { mu.Lock(); last = "idle"; mu.Unlock() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	isIdle := func() bool { mu.Lock(); defer mu.Unlock(); return last == "idle" }
	waitUntil(t, isIdle)
	b := beats.Load()
	p.Emit(drivers.Sample{Name: "Vehicle.Speed", Value: 1, Time: time.Now()}) // pending for up to an hour
	waitUntil(t, func() bool { return beats.Load() > b && isIdle() })
	if n := len(store.snapshot()); n != 0 {
		t.Fatalf("%d records before the interval ended", n)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestStuckAppendAfterIdleIsNotIdle: the pipeline marks itself idle only
// while it waits; a sample that wakes it beats first, so a store that hangs
// in Append afterwards stops the heartbeats (and the watchdog) instead of
// hiding behind the idle mark.
func TestStuckAppendAfterIdleIsNotIdle(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	stuck := func(ctx context.Context, _ Class, _ [][]byte) error {
		once.Do(func() { close(entered) })
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}
	p, err := New(Options{Interval: time.Hour, Events: []string{"Door"}, Append: stuck, StopGrace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var last string
	p.SetHeartbeat(func() { mu.Lock(); last = "beat"; mu.Unlock() })
	p.SetIdle(func() { mu.Lock(); last = "idle"; mu.Unlock() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	defer func() { cancel(); close(release); <-done }()

	waitUntil(t, func() bool { mu.Lock(); defer mu.Unlock(); return last == "idle" })
	p.Emit(drivers.Sample{Name: "Door", Value: 1, Time: time.Now()}) // an event: appended at once
	<-entered
	mu.Lock()
	defer mu.Unlock()
	if last != "beat" {
		t.Fatalf("last liveness call before the stuck Append was %q, want beat", last)
	}
}
