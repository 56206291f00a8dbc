package canbus

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

var errGone = errors.New("gone")

func isGone(err error) bool { return errors.Is(err, errGone) }

// scriptDialer returns scripted results (a Bus or an error) in order, then
// endpoints of v.
type scriptDialer struct {
	mu      sync.Mutex
	v       *Virtual
	results []any
	calls   []time.Time
}

func (s *scriptDialer) dial(context.Context) (Bus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, time.Now())
	if len(s.results) == 0 {
		return s.v.Attach(), nil
	}
	r := s.results[0]
	s.results = s.results[1:]
	if err, ok := r.(error); ok {
		return nil, err
	}
	return r.(Bus), nil
}

func (s *scriptDialer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

func TestRedialerBackoffIsCapped(t *testing.T) {
	t.Parallel()
	v := NewVirtual()
	peer := v.Attach()
	defer peer.Close()
	results := make([]any, 8)
	for i := range results {
		results[i] = errGone
	}
	s := &scriptDialer{v: v, results: results}
	r := NewRedialer(RedialOptions{Dial: s.dial, Lost: isGone, Min: 5 * time.Millisecond, Max: 20 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := peer.Send(ctx, frame(1)); err != nil { // before r is attached: not seen
		t.Fatal(err)
	}
	go func() {
		for ctx.Err() == nil && !r.Connected() {
			time.Sleep(time.Millisecond)
		}
		_ = peer.Send(ctx, frame(2))
	}()
	f, err := r.Receive(ctx)
	if err != nil || f.ID != 2 {
		t.Fatalf("Receive() = %#x, %v; want id 2", f.ID, err)
	}
	if n := s.count(); n != 9 {
		t.Errorf("dialled %d times, want 9", n)
	}
	// 8 failures: waits 5, 10, 20, 20, ... ms (±25 %): at least 0.75×125 ms.
	s.mu.Lock()
	span := s.calls[8].Sub(s.calls[0])
	s.mu.Unlock()
	if span < 90*time.Millisecond {
		t.Errorf("8 failed dials spanned %v, want backoff", span)
	}
	for fails := 1; fails < 40; fails++ {
		if d := r.o.Min << min(fails-1, 20); fails > 3 && d < r.o.Max {
			t.Errorf("backoff after %d fails = %v, want capped at %v", fails, d, r.o.Max)
		}
	}
}

func TestRedialerReturnsOtherErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	s := &scriptDialer{v: NewVirtual(), results: []any{boom}}
	r := NewRedialer(RedialOptions{Dial: s.dial, Lost: isGone})
	defer r.Close()
	if _, err := r.Receive(context.Background()); !errors.Is(err, boom) {
		t.Errorf("Receive() = %v, want boom", err)
	}
}

// TestRedialerSendHonoursContext: Receive sits in a long backoff; Send
// must give up at its own deadline, and Close must unblock Receive.
func TestRedialerSendHonoursContext(t *testing.T) {
	t.Parallel()
	s := &scriptDialer{v: NewVirtual(), results: []any{errGone, errGone, errGone}}
	r := NewRedialer(RedialOptions{Dial: s.dial, Lost: isGone, Min: time.Hour, Max: time.Hour})
	recv := make(chan error, 1)
	go func() { _, err := r.Receive(context.Background()); recv <- err }()
	deadline := time.Now().Add(10 * time.Second)
	for s.count() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := r.Send(ctx, frame(1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Send() = %v, want DeadlineExceeded", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-recv:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Receive() after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Receive did not return after Close")
	}
}

// TestRedialerAcrossServerRestart uses the real bridge: the server goes,
// comes back on the same path, and both directions work again.
func TestRedialerAcrossServerRestart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "bus.sock")
	serve := func(v *Virtual) (stop func()) {
		l, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = Serve(ctx, l, v) }()
		return func() { cancel(); <-done }
	}
	lost := func(err error) bool {
		return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) ||
			errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)
	}
	r := NewRedialer(RedialOptions{
		Dial: func(ctx context.Context) (Bus, error) { return Dial(ctx, path) },
		Lost: lost,
	})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for round := range 2 {
		v := NewVirtual()
		ep := v.Attach()
		stop := serve(v)
		if err := r.Send(ctx, frame(0x10+uint32(round))); err != nil {
			t.Fatalf("round %d: Send() = %v", round, err)
		}
		if f, err := ep.Receive(ctx); err != nil || f.ID != 0x10+uint32(round) {
			t.Fatalf("round %d: peer got %#x, %v", round, f.ID, err)
		}
		if err := ep.Send(ctx, frame(0x20)); err != nil {
			t.Fatal(err)
		}
		if f, err := r.Receive(ctx); err != nil || f.ID != 0x20 {
			t.Fatalf("round %d: Receive() = %#x, %v", round, f.ID, err)
		}
		stop()
		ep.Close()
	}
	if got := r.Dials(); got != 2 {
		t.Errorf("Dials() = %d, want 2", got)
	}
}
