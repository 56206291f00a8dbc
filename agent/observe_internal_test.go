package agent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/health"
)

// notifySocket stands in for systemd's notify socket: it points
// $NOTIFY_SOCKET at a unix datagram socket and sets $WATCHDOG_USEC
// (empty: no watchdog).
func notifySocket(t *testing.T, watchdog time.Duration) *net.UnixConn {
	t.Helper()
	name := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	t.Setenv("WATCHDOG_PID", "")
	if watchdog > 0 {
		t.Setenv("WATCHDOG_USEC", strconv.FormatInt(watchdog.Microseconds(), 10))
	} else {
		t.Setenv("WATCHDOG_USEC", "")
	}
	return conn
}

// next reads one notification, "" after timeout.
func next(t *testing.T, conn *net.UnixConn, timeout time.Duration) string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatal(err)
	}
	n, _, err := conn.ReadFromUnix(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

// testProbes are three probes counting their calls; the "buffer" one
// blocks while hang is set, signalling entered first.
type testProbes struct {
	calls   [3]atomic.Int64
	hang    atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func newTestProbes() *testProbes {
	return &testProbes{entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (p *testProbes) fns() map[string]func() {
	return map[string]func(){
		"buffer": func() {
			p.calls[0].Add(1)
			if p.hang.Load() {
				p.entered <- struct{}{}
				<-p.release
			}
		},
		"drivers": func() { p.calls[1].Add(1) },
		"uplink":  func() { p.calls[2].Add(1) },
	}
}

func startObserver(t *testing.T, probes map[string]func()) (*health.Tracker, *observer, func()) {
	t.Helper()
	tracker := health.New(nil)
	o, err := newObserver(tracker, slog.New(slog.DiscardHandler), func() string { return "fine" }, probes)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); o.run(ctx) }()
	return tracker, o, func() { cancel(); <-done }
}

// TestObserveWatchdog: with a systemd watchdog the probes run once per
// ping on the same timer (WATCHDOG_USEC/2), and a probe that hangs stops
// the pings and shows as a hung loop.
func TestObserveWatchdog(t *testing.T) {
	const interval = 400 * time.Millisecond
	conn := notifySocket(t, interval)
	p := newTestProbes()
	tracker, o, stop := startObserver(t, p.fns())
	defer stop()
	if o.period != interval/2 {
		t.Fatalf("period %v, want %v", o.period, interval/2)
	}

	pings := int64(0)
	for deadline := time.Now().Add(30 * time.Second); pings < 5; {
		if time.Now().After(deadline) {
			t.Fatalf("%d pings in 30 s, want 5", pings)
		}
		if msg := next(t, conn, time.Second); strings.Contains(msg, "WATCHDOG=1") {
			pings++
			// The round probes first, then pings: every probe has run
			// once per ping so far, at most one round ahead.
			for i := range p.calls {
				if n := p.calls[i].Load(); n < pings || n > pings+1 {
					t.Fatalf("after %d pings probe %d ran %d times: not on the ping's timer", pings, i, n)
				}
			}
		}
	}
	if ok, why := tracker.Healthy(interval); !ok {
		t.Fatalf("healthy phase: %s", why)
	}

	// The buffer deadlocks: its probe never returns.
	p.hang.Store(true)
	select {
	case <-p.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the probe was not called again")
	}
	for next(t, conn, 20*time.Millisecond) != "" { // the ping sent before the hang
	}
	if msg := next(t, conn, 3*interval); msg != "" {
		t.Errorf("notification while a probe hangs: %q", msg)
	}
	if ok, why := tracker.Healthy(interval); ok || !strings.Contains(why, "buffer silent for") {
		t.Errorf("Healthy() = %v, %q; want the buffer probe hung", ok, why)
	}
	p.hang.Store(false)
	close(p.release)
	if msg := next(t, conn, 30*time.Second); !strings.Contains(msg, "WATCHDOG=1") {
		t.Errorf("after the probe returned: %q, want a ping", msg)
	}
}

// TestObserveWithoutWatchdog: without a watchdog the probes and the
// status run once at start and then only every observeWithoutWatchdog:
// idle for many watchdog periods, one round; the waiting probes are not
// hung.
func TestObserveWithoutWatchdog(t *testing.T) {
	for _, socket := range []bool{true, false} {
		t.Run("socket="+strconv.FormatBool(socket), func(t *testing.T) {
			var conn *net.UnixConn
			if socket {
				conn = notifySocket(t, 0)
			} else {
				t.Setenv("NOTIFY_SOCKET", "")
			}
			p := newTestProbes()
			tracker, o, stop := startObserver(t, p.fns())
			defer stop()
			if o.period != observeWithoutWatchdog {
				t.Fatalf("period %v, want %v", o.period, observeWithoutWatchdog)
			}
			if socket {
				if msg := next(t, conn, 30*time.Second); msg != "STATUS=fine" {
					t.Fatalf("first notification %q, want STATUS=fine", msg)
				}
				if msg := next(t, conn, time.Second); msg != "" {
					t.Errorf("second notification %q within 1 s, want none", msg)
				}
			} else {
				deadline := time.Now().Add(30 * time.Second)
				for p.calls[2].Load() == 0 && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				time.Sleep(time.Second)
			}
			for i := range p.calls {
				if n := p.calls[i].Load(); n != 1 {
					t.Errorf("probe %d ran %d times, want 1", i, n)
				}
			}
			if ok, why := tracker.Healthy(100 * time.Millisecond); !ok {
				t.Errorf("Healthy() = false (%s): probes waiting for their round are not hung", why)
			}
		})
	}
}
