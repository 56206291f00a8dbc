package ctl

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// SampleStatus is a fully populated status for tests.
func sampleStatus() Status {
	t0 := time.Date(2026, 11, 22, 1, 2, 3, 0, time.UTC)
	return Status{
		Version:   "1.2.3",
		Time:      t0,
		StartedAt: t0.Add(-time.Hour),
		Identity:  Identity{Thing: "tcu-0042", Source: "provisioned", CertExpiry: t0.AddDate(1, 0, 0)},
		Connection: Connection{
			State: "connected", Endpoint: "127.0.0.1:8883", Since: t0.Add(-time.Minute),
			Reconnects: 2, Published: 100, Acked: 99,
		},
		Queues: []Queue{
			{Class: "telemetry", Records: 1234, Bytes: 56789, OldestUnsentSeconds: 12.5},
			{Class: "event", Records: 3, Bytes: 300, OldestUnsentSeconds: 1, Evicted: 7},
		},
		OldestUnsentSeconds: 12.5,
		Buses:               []Bus{{Name: "can0", Driver: "powertrain", State: "running", FramesPerSec: 812.5, Frames: 1e6, DecodeErrors: 3, KernelDrops: 1, Errors: 0}},
		LastCommand:         &Command{ID: "c-1", Name: "door.lock", Status: "SUCCEEDED", At: t0.Add(-5 * time.Second)},
		Health: Health{
			OK: true, Why: "degraded: gnss: no fix",
			Loops:    []Loop{{Name: "batcher", Critical: true, AgeSeconds: 0.5}},
			Degraded: []Degraded{{Component: "gnss", Reason: "no fix", Since: t0.Add(-time.Minute)}},
		},
	}
}

// serve runs Serve on a fresh socket and returns its path; the server stops
// at test cleanup.
func serve(t *testing.T, status func() Status) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "ctl.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, ln, status) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeListener() = %v, want nil", err)
		}
	})
	return path
}

func TestQueryRoundTrip(t *testing.T) {
	t.Parallel()
	path := serve(t, sampleStatus)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := Query(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sampleStatus(), got); diff != "" {
		t.Errorf("Query() mismatch (-want +got):\n%s", diff)
	}
}

func TestSocketMode(t *testing.T) {
	t.Parallel()
	path := serve(t, sampleStatus)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != SocketMode {
		t.Errorf("socket mode = %v, want socket %v", fi.Mode(), SocketMode)
	}
}

func TestServeRemovesSocket(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ctl.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, path, sampleStatus) }()
	qctx, qcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer qcancel()
	for {
		if _, err := Query(qctx, path); err == nil {
			break
		} else if qctx.Err() != nil {
			t.Fatalf("server never answered: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve() = %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after shutdown: %v", err)
	}
	if _, err := Query(qctx, path); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Query() after shutdown = %v, want ErrNotRunning", err)
	}
}

func TestListenStaleAndLive(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()

	// A stale socket (its listener gone without unlinking) is replaced.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln2, err := Listen(stale)
	if err != nil {
		t.Fatalf("Listen over stale socket = %v", err)
	}
	defer ln2.Close()

	// A live one is refused.
	if _, err := Listen(stale); !errors.Is(err, ErrInUse) {
		t.Errorf("Listen over live socket = %v, want ErrInUse", err)
	}

	// A regular file is never removed.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file); err == nil {
		t.Error("Listen over a regular file = nil, want error")
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep" {
		t.Errorf("regular file damaged: %q, %v", b, err)
	}
}

func TestQueryErrors(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Query(ctx, filepath.Join(t.TempDir(), "absent.sock")); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Query(absent) = %v, want ErrNotRunning", err)
	}

	// A server that never answers: the context bounds the query.
	path := filepath.Join(t.TempDir(), "mute.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	short, cancelShort := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancelShort()
	if _, err := Query(short, path); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Query(mute) = %v, want deadline exceeded", err)
	}
}

// TestLogLevel sets and reads the log level over the socket, rejects a bad
// level and reports ErrUnsupported from a server without WithLogLevel.
func TestLogLevel(t *testing.T) {
	t.Parallel()
	var lv slog.LevelVar
	path := filepath.Join(t.TempDir(), "ctl.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, ln, sampleStatus, WithLogLevel(&lv)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	steps := []struct {
		set, want string
		wantErr   bool
	}{
		{set: "", want: "INFO"},
		{set: "debug", want: "DEBUG"},
		{set: "", want: "DEBUG"},
		{set: " WARN\n", want: "WARN"},
		{set: "verbose", wantErr: true},
		{set: "", want: "WARN"},
		{set: "error", want: "ERROR"},
	}
	for _, s := range steps {
		got, err := LogLevel(context.Background(), path, s.set)
		if (err != nil) != s.wantErr || (!s.wantErr && got != s.want) {
			t.Fatalf("LogLevel(%q) = %q, %v; want %q, error %v", s.set, got, err, s.want, s.wantErr)
		}
	}
	if lv.Level() != slog.LevelError {
		t.Errorf("level var = %v, want ERROR", lv.Level())
	}

	old := serve(t, sampleStatus) // no WithLogLevel
	if _, err := LogLevel(context.Background(), old, "debug"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("LogLevel on a server without it: %v, want ErrUnsupported", err)
	}
	if _, err := LogLevel(context.Background(), filepath.Join(t.TempDir(), "none.sock"), ""); !errors.Is(err, ErrNotRunning) {
		t.Errorf("LogLevel without a server: %v, want ErrNotRunning", err)
	}
}

// FuzzParseLevel: the PUT body of LogLevelPath comes from a socket client.
// ParseLevel never panics and accepts only the four level names.
func FuzzParseLevel(f *testing.F) {
	for _, s := range []string{"debug", " INFO\n", "warn", "error", "", "verbose", "DEBUG+2", "info\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLevel(s)
		if err != nil {
			return
		}
		switch l {
		case slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError:
		default:
			t.Fatalf("ParseLevel(%q) = %v", s, l)
		}
	})
}
