package gnss

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
)

// loopPort replays a capture line by line (one line per millisecond,
// looping) until closed, like a receiver that never stops talking.
type loopPort struct {
	lines  [][]byte
	i      int
	once   sync.Once
	closed chan struct{}
}

func (p *loopPort) Read(b []byte) (int, error) {
	select {
	case <-p.closed:
		return 0, io.ErrClosedPipe
	case <-time.After(time.Millisecond):
	}
	l := p.lines[p.i%len(p.lines)]
	p.i++
	return copy(b, l), nil
}

func (p *loopPort) Close() error { p.once.Do(func() { close(p.closed) }); return nil }

func TestDutyCycle(t *testing.T) {
	t.Parallel()
	capture, err := os.ReadFile(filepath.Join("testdata", "gpsd", "neo-m8n.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(capture, []byte("\n"))
	var opens atomic.Int64
	d := New(drivers.Params{Name: "gnss"})
	d.Device = "/dev/fake"
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	d.open = func(string, int) (io.ReadCloser, error) {
		opens.Add(1)
		return &loopPort{lines: lines, closed: make(chan struct{})}, nil
	}
	c := newCollector()
	positions := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		n := 0
		for _, s := range c.samples {
			if s.Name == SignalLatitude {
				n++
			}
		}
		return n
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (opens %d, positions %d)", what, opens.Load(), positions())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	d.SetDutyCycle(10*time.Second, 300*time.Millisecond) // window capped to the period
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx, c) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitUntil("three duty-cycle windows", func() bool { return opens.Load() >= 3 })
	// At most one position per window: the port is closed after the
	// first fix (a window on a loaded machine may end before its fix).
	if p, o := positions(), int(opens.Load()); p > o || p == 0 {
		t.Errorf("%d positions over %d windows, want one per window", p, o)
	}
	// Continuous again: many positions from one open.
	d.SetDutyCycle(0, 0)
	o := opens.Load()
	p := positions()
	waitUntil("more positions from one port", func() bool { return positions() >= p+5 })
	if got := opens.Load(); got > o+1 {
		t.Errorf("continuous reading opened the port %d more times", got-o)
	}
}
