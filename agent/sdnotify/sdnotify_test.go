package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tcu-agent/tcu-agent/agent/health"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// listen opens a unix datagram socket standing in for systemd's notify
// socket and points $NOTIFY_SOCKET at it.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %s: %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv(envSocket, name)
	return conn
}

// recv reads one notification, or returns "" after timeout.
func recv(t *testing.T, conn *net.UnixConn, timeout time.Duration) string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatal(err)
	}
	n, _, err := conn.ReadFromUnix(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return ""
		}
		t.Fatalf("read notify socket: %v", err)
	}
	return string(buf[:n])
}

func TestReadyStoppingStatus(t *testing.T) {
	sockets := map[string]string{
		"path":     filepath.Join(t.TempDir(), "notify.sock"),
		"abstract": fmt.Sprintf("@tcu-agent-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano()),
	}
	for name, socket := range sockets {
		t.Run(name, func(t *testing.T) {
			conn := listen(t, socket)
			if err := Ready(); err != nil {
				t.Fatalf("Ready() = %v", err)
			}
			if err := Status("provisioned; mqtt connected\nbuffer 12 rec"); err != nil {
				t.Fatalf("Status() = %v", err)
			}
			if err := Stopping(); err != nil {
				t.Fatalf("Stopping() = %v", err)
			}
			for _, want := range []string{"READY=1", "STATUS=provisioned; mqtt connected buffer 12 rec", "STOPPING=1"} {
				if got := recv(t, conn, 5*time.Second); got != want {
					t.Errorf("received %q, want %q", got, want)
				}
			}
		})
	}
}

func TestNoSystemd(t *testing.T) {
	t.Setenv(envSocket, "")
	t.Setenv(envWatchdogUs, "100000")
	for name, f := range map[string]func() error{"Ready": Ready, "Stopping": Stopping, "Status": func() error { return Status("x") }} {
		if err := f(); err != nil {
			t.Errorf("%s() without NOTIFY_SOCKET = %v, want nil", name, err)
		}
	}
	if sent, err := Notify("READY=1"); sent || err != nil {
		t.Errorf("Notify() = %v, %v; want false, nil", sent, err)
	}
	done := make(chan error, 1)
	go func() { done <- Watchdog(context.Background(), health.New(nil), nil) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Watchdog() = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Watchdog() without NOTIFY_SOCKET did not return at once")
	}
}

func TestNotifyDeadSocket(t *testing.T) {
	t.Setenv(envSocket, filepath.Join(t.TempDir(), "absent.sock"))
	if err := Ready(); err == nil {
		t.Error("Ready() to a missing socket = nil, want error")
	}
}

func TestWatchdogInterval(t *testing.T) {
	tests := []struct {
		name    string
		usec    string
		pid     string
		want    time.Duration
		wantErr bool
	}{
		{name: "unset", want: 0},
		{name: "set", usec: "30000000", want: 30 * time.Second},
		{name: "our pid", usec: "2000000", pid: strconv.Itoa(os.Getpid()), want: 2 * time.Second},
		{name: "other pid", usec: "2000000", pid: strconv.Itoa(os.Getpid() + 1), want: 0},
		{name: "garbage usec", usec: "soon", wantErr: true},
		{name: "zero usec", usec: "0", wantErr: true},
		{name: "garbage pid", usec: "1", pid: "me", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(envWatchdogUs, tt.usec)
			t.Setenv(envWatchdogPID, tt.pid)
			got, err := WatchdogInterval()
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("WatchdogInterval() = %v, %v; want %v, err %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestWatchdogBadEnv(t *testing.T) {
	listen(t, filepath.Join(t.TempDir(), "notify.sock"))
	t.Setenv(envWatchdogUs, "x")
	if err := Watchdog(context.Background(), nil, nil); err == nil {
		t.Error("Watchdog() with WATCHDOG_USEC=x = nil, want error")
	}
}

// TestWatchdogStopsWhenLoopHangs is the acceptance test: with NOTIFY_SOCKET
// and WATCHDOG_USEC set, the notify socket sees STATUS and periodic
// WATCHDOG=1 while the critical loop beats, and the pings stop once the loop
// hangs.
func TestWatchdogStopsWhenLoopHangs(t *testing.T) {
	const interval = 400 * time.Millisecond
	conn := listen(t, filepath.Join(t.TempDir(), "notify.sock"))
	t.Setenv(envWatchdogUs, strconv.FormatInt(interval.Microseconds(), 10))
	t.Setenv(envWatchdogPID, strconv.Itoa(os.Getpid()))

	tracker := health.New(nil)
	loop := tracker.Loop("batcher", true)
	var hang atomic.Bool
	var depth atomic.Int64
	loopCtx, stopLoop := context.WithCancel(context.Background())
	loopDone := make(chan struct{})
	go func() { // a critical loop; stopped by stopLoop
		defer close(loopDone)
		for {
			select {
			case <-loopCtx.Done():
				return
			case <-time.After(interval / 8):
			}
			if !hang.Load() {
				loop.Beat()
				depth.Add(1)
			}
		}
	}()
	defer func() { stopLoop(); <-loopDone }()

	ctx, cancel := context.WithCancel(context.Background())
	wdDone := make(chan error, 1)
	go func() {
		wdDone <- Watchdog(ctx, tracker, func() string { return "buffer " + strconv.FormatInt(depth.Load(), 10) + " rec" })
	}()
	defer func() {
		cancel()
		if err := <-wdDone; err != nil {
			t.Errorf("Watchdog() = %v, want nil", err)
		}
	}()

	// Phase 1: healthy, pings and status arrive.
	pings, statuses := 0, 0
	for deadline := time.Now().Add(30 * time.Second); pings < 4 && time.Now().Before(deadline); {
		msg := recv(t, conn, time.Second)
		if strings.Contains(msg, "WATCHDOG=1") {
			pings++
		}
		if strings.Contains(msg, "STATUS=buffer ") {
			statuses++
		}
	}
	if pings < 4 || statuses == 0 {
		t.Fatalf("healthy phase: saw %d pings and %d statuses, want >= 4 and >= 1", pings, statuses)
	}

	// Phase 2: the loop hangs. Once the tracker says so (it cannot recover:
	// nothing beats any more), let a tick that was already under way land,
	// then there must be no ping for three watchdog intervals, and the
	// status must say why.
	hang.Store(true)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ok, _ := tracker.Healthy(interval); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("tracker still healthy 30s after the loop hung")
		}
	}
	sawUnhealthy := false
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		if msg := recv(t, conn, time.Until(end)+time.Millisecond); strings.Contains(msg, "STATUS=unhealthy, watchdog withheld: hung: batcher silent for") {
			sawUnhealthy = true
		}
	}
	for end := time.Now().Add(3 * interval); time.Now().Before(end); {
		msg := recv(t, conn, time.Until(end)+time.Millisecond)
		if strings.Contains(msg, "WATCHDOG=1") {
			t.Fatalf("ping after the loop hung: %q", msg)
		}
		if strings.Contains(msg, "STATUS=unhealthy, watchdog withheld: hung: batcher silent for") {
			sawUnhealthy = true
		}
	}
	if !sawUnhealthy {
		t.Error("no STATUS=unhealthy... after the loop hung")
	}
}

// TestWatchdogStatusOnly checks that without WATCHDOG_USEC there are no pings,
// only STATUS= when it changes.
func TestWatchdogStatusOnly(t *testing.T) {
	conn := listen(t, filepath.Join(t.TempDir(), "notify.sock"))
	t.Setenv(envWatchdogUs, "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Watchdog(ctx, nil, func() string { return "offline" }) }()
	if got := recv(t, conn, 10*time.Second); got != "STATUS=offline" {
		t.Errorf("received %q, want STATUS=offline", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Watchdog() = %v, want nil", err)
	}
}

func TestTick(t *testing.T) {
	t.Parallel()
	now := time.Unix(0, 0)
	hung := health.New(func() time.Time { return now })
	hung.Loop("uplink", true)
	now = now.Add(time.Hour)
	later := health.New(nil)
	tests := []struct {
		name       string
		tracker    *health.Tracker
		status     func() string
		interval   time.Duration
		last       string
		wantMsg    string
		wantStatus string
	}{
		{name: "ping and new status", tracker: later, status: func() string { return "a" }, interval: time.Second, wantMsg: "WATCHDOG=1\nSTATUS=a", wantStatus: "a"},
		{name: "ping, same status", tracker: later, status: func() string { return "a" }, interval: time.Second, last: "a", wantMsg: "WATCHDOG=1", wantStatus: "a"},
		{name: "nil tracker pings", status: func() string { return "a" }, interval: time.Second, last: "a", wantMsg: "WATCHDOG=1", wantStatus: "a"},
		{name: "hung withholds ping", tracker: hung, status: func() string { return "a" }, interval: time.Second, last: "a", wantMsg: "STATUS=unhealthy, watchdog withheld: hung: uplink silent for 1h0m0s", wantStatus: "unhealthy, watchdog withheld: hung: uplink silent for 1h0m0s"},
		{name: "hung, already said", tracker: hung, interval: time.Second, last: "unhealthy, watchdog withheld: hung: uplink silent for 1h0m0s", wantMsg: "", wantStatus: "unhealthy, watchdog withheld: hung: uplink silent for 1h0m0s"},
		{name: "no watchdog, unchanged", status: func() string { return "a" }, last: "a", wantMsg: "", wantStatus: "a"},
		{name: "no watchdog, nil status", wantMsg: "", wantStatus: ""},
		{name: "status newline flattened", status: func() string { return "a\nb" }, wantMsg: "STATUS=a b", wantStatus: "a b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			msg, status := tick(tt.tracker, tt.status, tt.interval, tt.last)
			if msg != tt.wantMsg || status != tt.wantStatus {
				t.Errorf("tick() = %q, %q; want %q, %q", msg, status, tt.wantMsg, tt.wantStatus)
			}
		})
	}
}

// TestNotifier checks the caller-scheduled form: nil without
// $NOTIFY_SOCKET, an error for a malformed $WATCHDOG_USEC, and per Tick
// exactly one datagram: a ping while healthy, STATUS= only on a change,
// none for a hung critical loop but the reason.
func TestNotifier(t *testing.T) {
	t.Run("no socket", func(t *testing.T) {
		t.Setenv(envSocket, "")
		if n, err := NewNotifier(); n != nil || err != nil {
			t.Errorf("NewNotifier() = %v, %v; want nil, nil", n, err)
		}
	})
	t.Run("bad watchdog", func(t *testing.T) {
		listen(t, filepath.Join(t.TempDir(), "notify.sock"))
		t.Setenv(envWatchdogUs, "x")
		if _, err := NewNotifier(); err == nil {
			t.Error("NewNotifier() with WATCHDOG_USEC=x: nil error")
		}
	})
	t.Run("ticks", func(t *testing.T) {
		conn := listen(t, filepath.Join(t.TempDir(), "notify.sock"))
		t.Setenv(envWatchdogUs, "30000000")
		t.Setenv(envWatchdogPID, "")
		n, err := NewNotifier()
		if err != nil || n == nil {
			t.Fatalf("NewNotifier() = %v, %v", n, err)
		}
		if n.Interval() != 30*time.Second {
			t.Errorf("Interval() = %v, want 30s", n.Interval())
		}
		now := time.Unix(0, 0)
		tracker := health.New(func() time.Time { return now })
		loop := tracker.Loop("probe", true)
		status := func() string { return "fine" }
		steps := []struct {
			name string
			do   func()
			want string
		}{
			{"first", func() {}, "WATCHDOG=1\nSTATUS=fine"},
			{"same status", func() { now = now.Add(10 * time.Second) }, "WATCHDOG=1"},
			{"hung", func() { now = now.Add(time.Minute) }, "STATUS=unhealthy, watchdog withheld: hung: probe silent for 1m10s"},
			{"beats again", func() { loop.Beat() }, "WATCHDOG=1\nSTATUS=fine"},
		}
		for _, s := range steps {
			s.do()
			if err := n.Tick(tracker, status); err != nil {
				t.Fatalf("%s: Tick() = %v", s.name, err)
			}
			if got := recv(t, conn, 5*time.Second); got != s.want {
				t.Errorf("%s: received %q, want %q", s.name, got, s.want)
			}
		}
		if got := recv(t, conn, 50*time.Millisecond); got != "" {
			t.Errorf("extra datagram %q", got)
		}
	})
}
