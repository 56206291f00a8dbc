package buffer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestPanicRepairs injects a panic where each public method reads the
// store: it must not escape; the store is moved aside, a fresh one takes
// its place (Stats().Degraded says so), seqs continue above every seq
// handed out, and the queue works on. An append that hit the panic is
// written to the fresh store instead.
func TestPanicRepairs(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, hook string
		op         func(t *testing.T, q *Queue) error
	}{
		{"lease", "scan", func(_ *testing.T, q *Queue) error { _, err := q.Lease(10, 0); return err }},
		{"append", "append", func(_ *testing.T, q *Queue) error {
			_, err := q.Append(context.Background(), ClassCritical, []byte("survives"))
			return err
		}},
		{"stats", "scan", func(_ *testing.T, q *Queue) error { q.Stats(); return nil }},
		{"gc", "gc", func(_ *testing.T, q *Queue) error { q.CollectGarbage(); return nil }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var armed atomic.Bool
			o := DefaultOptions(t.TempDir() + "/queue")
			o.LiveWindow = -1
			o.MinFree = -1
			o.faultHook = func(op string) {
				if op == tt.hook && armed.CompareAndSwap(true, false) {
					var s []int
					_ = s[op[0]] //nolint:gosec // a deliberate runtime error, as Badger's are
				}
			}
			q, err := Open(o)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = q.Close() }()
			var last uint64
			for range 3 {
				if last, err = q.Append(context.Background(), ClassEvent, []byte("old")); err != nil {
					t.Fatal(err)
				}
			}
			armed.Store(true)
			err = tt.op(t, q)
			if armed.Load() {
				t.Fatal("the hook did not fire")
			}
			switch tt.name {
			case "lease":
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Lease after a panic = %v, want ErrCorrupt", err)
				}
			default:
				if err != nil {
					t.Fatalf("%s after a panic: %v", tt.name, err)
				}
			}
			if d := q.Stats().Degraded; !strings.Contains(d, "corrupt") || !strings.Contains(d, "panicked") {
				t.Fatalf("Degraded = %q, want the panic as corruption", d)
			}
			if moved, _ := filepath.Glob(o.Dir + ".corrupt-*"); len(moved) != 1 {
				t.Fatalf("quarantined copies = %v, want 1", moved)
			}
			s, err := q.Append(context.Background(), ClassTelemetry, []byte("new"))
			if err != nil || s <= last {
				t.Fatalf("Append after repair = %d, %v; want a seq above %d", s, err, last)
			}
			recs, err := q.Lease(10, 0)
			if err != nil {
				t.Fatal(err)
			}
			want := 1
			if tt.name == "append" {
				want = 2 // the append that hit the panic went to the fresh store
			}
			if len(recs) != want || recs[len(recs)-1].Seq != s {
				t.Fatalf("leased %d records after repair, want %d ending with %d", len(recs), want, s)
			}
			if err := q.Ack(seqsOf(recs)...); err != nil {
				t.Fatal(err)
			}
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			// The repaired store reopens with the seq above everything.
			q2, err := Open(o)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = q2.Close() }()
			if s2, err := q2.Append(context.Background(), ClassEvent, []byte("x")); err != nil || s2 <= s {
				t.Fatalf("Append after reopen = %d, %v; want above %d", s2, err, s)
			}
			if d := q2.Stats().Degraded; d != "" {
				t.Fatalf("reopened repaired store degraded: %q", d)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err           error
		storage, full bool
	}{
		{fmt.Errorf("open: %w", syscall.EACCES), true, false},
		{&os.PathError{Op: "open", Path: "x", Err: syscall.EROFS}, true, false},
		{fmt.Errorf("sync: %w", syscall.EIO), true, false},
		{fmt.Errorf("write: %w", syscall.ENOSPC), true, true},
		{syscall.ENOTDIR, true, false},
		{errors.New("while sync file: x, error: input/output error"), true, false}, // Badger's %v
		{errors.New("checksum mismatch"), false, false},
		{fmt.Errorf("%w: bad", ErrCorrupt), false, false},
	} {
		got := classify(tt.err)
		if errors.Is(got, ErrStorage) != tt.storage || errors.Is(got, ErrFull) != tt.full {
			t.Errorf("classify(%v) = %v: storage %v full %v, want %v %v", tt.err, got,
				errors.Is(got, ErrStorage), errors.Is(got, ErrFull), tt.storage, tt.full)
		}
	}
}

// TestOpenAbandonedCloseQuarantines: a damaged store whose Close does not
// finish in time (a slow 32-bit board) is abandoned with Badger's
// directory lock still held; Open's retry then meets this process's own
// lock, not another agent's, and must move the damaged store aside and
// open a fresh one instead of failing "locked" forever.
func TestOpenAbandonedCloseQuarantines(t *testing.T) {
	t.Parallel()
	dir := t.TempDir() + "/queue"
	o := DefaultOptions(dir)
	o.MinFree = -1
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for range 10 {
		if last, err = q.Append(context.Background(), ClassEvent, []byte("before")); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	var damaged, abandoned atomic.Bool
	damaged.Store(true)
	release := make(chan struct{})
	o.idleCloseWait = 100 * time.Millisecond
	o.faultHook = func(op string) {
		switch {
		case op == "scan" && damaged.Load():
			var s []int
			_ = s[op[0]] //nolint:gosec // a deliberate runtime error while loading, as a damaged table's
		case op == "close" && damaged.CompareAndSwap(true, false):
			abandoned.Store(true)
			<-release // this Close hangs past closeQuietly's wait
		}
	}
	start := time.Now()
	q, err = Open(o)
	took := time.Since(start)
	close(release)
	if err != nil {
		t.Fatalf("Open after an abandoned close: %v", err)
	}
	defer q.Close()
	if !abandoned.Load() {
		t.Fatal("the damaged attempt's close was never reached")
	}
	s := q.Stats()
	if s.Degraded == "" || s.Records != 0 {
		t.Fatalf("after the abandoned close: degraded %q, records %d; want quarantined, empty", s.Degraded, s.Records)
	}
	if m, _ := filepath.Glob(dir + ".corrupt-*"); len(m) != 1 {
		t.Fatalf("quarantined stores %v, want one", m)
	}
	n, err := q.Append(context.Background(), ClassCritical, []byte("after"))
	if err != nil || n <= last {
		t.Fatalf("append in the fresh store: seq %d, %v; want > %d", n, err, last)
	}
	t.Logf("Open took %v (abandon wait 100ms, retries, quarantine)", took.Round(time.Millisecond))
}
