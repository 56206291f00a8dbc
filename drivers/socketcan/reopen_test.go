package socketcan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
)

// fakeBus is a bus whose Receive returns queued frames, then fails with
// FailWith (if set) or blocks until closed.
type fakeBus struct {
	frames   chan canbus.Frame
	failWith error
	closed   chan struct{}
	once     sync.Once
	rx       uint64
}

func newFakeBus(failWith error, frames ...canbus.Frame) *fakeBus {
	b := &fakeBus{frames: make(chan canbus.Frame, len(frames)), failWith: failWith, closed: make(chan struct{})}
	for _, f := range frames {
		b.frames <- f
	}
	return b
}

func (b *fakeBus) Receive(ctx context.Context) (canbus.Frame, error) {
	select {
	case f := <-b.frames:
		b.rx++
		return f, nil
	default:
	}
	if b.failWith != nil {
		return canbus.Frame{}, b.failWith
	}
	select {
	case <-ctx.Done():
		return canbus.Frame{}, ctx.Err()
	case <-b.closed:
		return canbus.Frame{}, fmt.Errorf("fake: %w", net.ErrClosed)
	}
}

func (b *fakeBus) Send(context.Context, canbus.Frame) error { return b.failWith }
func (b *fakeBus) Close() error                             { b.once.Do(func() { close(b.closed) }); return nil }
func (b *fakeBus) Stats() Stats                             { return Stats{RxFrames: b.rx, Drops: 1} }

// fakeOpener returns scripted results in order, then a blocking bus.
type fakeOpener struct {
	mu      sync.Mutex
	results []any // bus or error
	calls   []time.Time
}

func (o *fakeOpener) open(string, Options) (bus, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, time.Now())
	if len(o.results) == 0 {
		return newFakeBus(nil), nil
	}
	r := o.results[0]
	o.results = o.results[1:]
	if err, ok := r.(error); ok {
		return nil, err
	}
	return r.(bus), nil
}

func TestReopenerRecoversAfterNotReady(t *testing.T) {
	t.Parallel()
	notReady := fmt.Errorf("open vcan0: %w", drivers.ErrNotReady)
	first := newFakeBus(fmt.Errorf("receive vcan0: %w: network down", drivers.ErrNotReady), canbus.Frame{ID: 1})
	second := newFakeBus(nil, canbus.Frame{ID: 2})
	o := &fakeOpener{results: []any{first, notReady, notReady, notReady, second}}
	r := newReopener("vcan0", Options{}, Backoff{Min: 10 * time.Millisecond, Max: 40 * time.Millisecond}, o.open)
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, want := range []uint32{1, 2} {
		f, err := r.Receive(ctx)
		if err != nil || f.ID != want {
			t.Fatalf("Receive() = %#x, %v; want id %#x", f.ID, err, want)
		}
	}
	if got := r.Opens(); got != 2 {
		t.Errorf("Opens() = %d, want 2", got)
	}
	o.mu.Lock()
	calls := o.calls
	o.mu.Unlock()
	if len(calls) != 5 {
		t.Fatalf("open called %d times, want 5", len(calls))
	}
	// Three failures back off ≥ 0.75×(10+20+40) ms in total: no busy loop.
	if gap := calls[4].Sub(calls[1]); gap < 50*time.Millisecond {
		t.Errorf("reopen attempts spanned %v, want backoff ≥ 50ms", gap)
	}
	if s := r.Stats(); s.RxFrames != 2 || s.Drops != 2 {
		t.Errorf("Stats() = %+v, want RxFrames 2, Drops 2 (summed over sockets)", s)
	}
}

func TestReopenerReturnsOtherErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	o := &fakeOpener{results: []any{boom}}
	r := newReopener("vcan0", Options{}, DefaultBackoff, o.open)
	defer r.Close()
	if _, err := r.Receive(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("Receive() error = %v, want boom", err)
	}
}

func TestReopenerCloseUnblocks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		results []any
	}{
		{"blocked in receive", nil},
		{"blocked in backoff", []any{fmt.Errorf("x: %w", drivers.ErrNotReady)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := &fakeOpener{results: tt.results}
			r := newReopener("vcan0", Options{}, Backoff{Min: time.Hour, Max: time.Hour}, o.open)
			errc := make(chan error, 1)
			go func() { _, err := r.Receive(context.Background()); errc <- err }()
			time.Sleep(20 * time.Millisecond)
			if err := r.Close(); err != nil {
				t.Fatalf("Close() = %v", err)
			}
			select {
			case err := <-errc:
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("Receive() after Close = %v, want net.ErrClosed", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Receive did not return after Close")
			}
		})
	}
}

func TestReopenerContextCancelDuringBackoff(t *testing.T) {
	t.Parallel()
	o := &fakeOpener{results: []any{fmt.Errorf("x: %w", drivers.ErrNotReady)}}
	r := newReopener("vcan0", Options{}, Backoff{Min: time.Hour, Max: time.Hour}, o.open)
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := r.Send(ctx, canbus.Frame{ID: 1}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send() = %v, want context.DeadlineExceeded", err)
	}
}

// TestReopenerNoBusyLoopOnFlappingSocket: every socket opens fine and then
// fails at once; reopening must still back off.
func TestReopenerNoBusyLoopOnFlappingSocket(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	opens := 0
	open := func(string, Options) (bus, error) {
		mu.Lock()
		opens++
		mu.Unlock()
		return newFakeBus(fmt.Errorf("receive: %w: network down", drivers.ErrNotReady)), nil
	}
	r := newReopener("vcan0", Options{}, Backoff{Min: 20 * time.Millisecond, Max: 40 * time.Millisecond}, open)
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := r.Receive(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive() = %v, want DeadlineExceeded", err)
	}
	mu.Lock()
	defer mu.Unlock()
	// Backoff 20, 40, 40, ... ms (±25 %) allows at most ~11 opens in 300 ms;
	// a busy loop would make thousands.
	if opens < 2 || opens > 15 {
		t.Errorf("opened %d times in 300ms, want 2..15", opens)
	}
}

// TestReopenerSendDeadlineWhileReceiveBacksOff: Receive waits out a long
// backoff for an absent interface; a Send with a deadline must not queue
// behind it but return when its own context ends.
func TestReopenerSendDeadlineWhileReceiveBacksOff(t *testing.T) {
	t.Parallel()
	notReady := fmt.Errorf("x: %w", drivers.ErrNotReady)
	o := &fakeOpener{results: []any{notReady, notReady, notReady}}
	r := newReopener("vcan0", Options{}, Backoff{Min: time.Hour, Max: time.Hour}, o.open)
	rctx, stop := context.WithCancel(context.Background())
	recv := make(chan error, 1)
	go func() { _, err := r.Receive(rctx); recv <- err }()
	// Wait until Receive is in its backoff (it has called open once).
	deadline := time.Now().Add(10 * time.Second)
	for {
		o.mu.Lock()
		n := len(o.calls)
		o.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Receive never tried to open")
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := r.Send(ctx, canbus.Frame{ID: 1})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Send() = %v, want DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Send took %v with a 50ms deadline", took)
	}
	stop()
	if err := <-recv; !errors.Is(err, context.Canceled) {
		t.Errorf("Receive() = %v, want Canceled", err)
	}
	_ = r.Close()
}
