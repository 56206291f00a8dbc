package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/telemetry"
	"github.com/tcu-agent/tcu-agent/buffer"
	"github.com/tcu-agent/tcu-agent/provisioning"
)

func TestIsStorageFault(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"permission", &fs.PathError{Op: "open", Path: "/x", Err: syscall.EACCES}, true},
		{"read-only", fmt.Errorf("open buffer: %w", &fs.PathError{Op: "open", Path: "/x", Err: syscall.EROFS}), true},
		{"io", fmt.Errorf("sync: %w", syscall.EIO), true},
		{"disk full", fmt.Errorf("%w: %w", buffer.ErrFull, syscall.ENOSPC), true},
		{"not a dir", &fs.PathError{Op: "mkdir", Path: "/x", Err: syscall.ENOTDIR}, true},
		{"corrupt", fmt.Errorf("%w: bad checksum", buffer.ErrCorrupt), false},
		{"bounds", buffer.ErrFull, false},
		{"other", errors.New("boom"), false},
	}
	for _, tt := range tests {
		if got := isStorageFault(tt.err); got != tt.want {
			t.Errorf("%s: isStorageFault(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestCloudFaultClassification(t *testing.T) {
	t.Parallel()
	until := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	hold := fmt.Errorf("provision: %w", &provisioning.HoldError{Until: until, Rejections: 3, Err: errors.New("create rejected: status 400")})
	breaker := fmt.Errorf("provision: %w", &provisioning.HoldError{Until: until, Err: provisioning.ErrTooManyCertificates})
	noClaim := fmt.Errorf("provision: %w: %w", provisioning.ErrNoClaim, &fs.PathError{Op: "open", Path: "/etc/tcu-agent/claim/claim.pem.crt", Err: fs.ErrNotExist})
	for _, err := range []error{hold, breaker} {
		if got, ok := holdUntil(err); !ok || !got.Equal(until) {
			t.Errorf("holdUntil(%v) = %v, %v; want %v", err, got, ok, until)
		}
	}
	for _, err := range []error{noClaim, errors.New("on hold until 2026-12-07T04:00:00Z"), nil} {
		if _, ok := holdUntil(err); ok {
			t.Errorf("holdUntil(%v) reported a hold", err)
		}
	}
	if !isNoClaim(noClaim) || isNoClaim(hold) || isNoClaim(errors.New("connect: refused")) || isNoClaim(nil) {
		t.Error("isNoClaim misclassifies")
	}
}

func openTestQueue(t *testing.T) *buffer.Queue {
	t.Helper()
	o := buffer.DefaultOptions(filepath.Join(t.TempDir(), "queue"))
	o.Sync = buffer.SyncNone
	q, err := buffer.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func leaseAll(t *testing.T, q *buffer.Queue) []string {
	t.Helper()
	recs, err := q.Lease(1000, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(recs, func(a, b buffer.Record) int { return cmp.Compare(a.Seq, b.Seq) })
	var out []string
	for _, r := range recs {
		out = append(out, r.Class.String()+":"+string(r.Data))
	}
	return out
}

// TestStoreHoldsUntilTheBufferOpens: records appended before the buffer is
// open are held (bounded: the oldest telemetry is dropped and counted) and
// written first, in order, once it is.
func TestStoreHoldsUntilTheBufferOpens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(4, slog.New(slog.DiscardHandler))
	recs := func(p ...string) [][]byte {
		var b [][]byte
		for _, x := range p {
			b = append(b, []byte(x))
		}
		return b
	}
	for _, step := range []struct {
		c    telemetry.Class
		data [][]byte
	}{
		{telemetry.ClassTelemetry, recs("t1", "t2")},
		{telemetry.ClassEvent, recs("e1")},
		{telemetry.ClassTelemetry, recs("t3", "t4")}, // 5 > 4: t1 dropped
	} {
		if err := s.append(ctx, step.c, step.data); err != nil {
			t.Fatalf("append while not open: %v", err)
		}
	}
	if s.heldN.Load() != 4 || s.drops.Load() != 1 {
		t.Fatalf("held %d dropped %d, want 4 and 1", s.heldN.Load(), s.drops.Load())
	}
	q := openTestQueue(t)
	defer q.Close()
	s.setQueue(q)
	if err := s.append(ctx, telemetry.ClassTelemetry, recs("t5")); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(leaseAll(t, q))
	// In seq order: held events, held telemetry, then the new record.
	if want := "[event:e1 telemetry:t2 telemetry:t3 telemetry:t4 telemetry:t5]"; got != want {
		t.Errorf("stored %s, want %s", got, want)
	}
	if s.heldN.Load() != 0 {
		t.Errorf("still held: %d", s.heldN.Load())
	}
}

// TestStoreHoldsWhileTheBufferRefuses: a buffer that refuses appends (here:
// closed under it) makes the records held and the fault reported, not lost.
func TestStoreHoldsWhileTheBufferRefuses(t *testing.T) {
	t.Parallel()
	s := newStore(100, slog.New(slog.DiscardHandler))
	q := openTestQueue(t)
	s.setQueue(q)
	_ = q.Close()
	if err := s.append(context.Background(), telemetry.ClassEvent, [][]byte{[]byte("e1")}); err != nil {
		t.Fatalf("append: %v", err)
	}
	if s.heldN.Load() != 1 || s.fault() == nil {
		t.Errorf("held %d fault %v, want 1 and the refusal", s.heldN.Load(), s.fault())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s.close(ctx)
	if s.drops.Load() != 1 {
		t.Errorf("loss at stop not counted: drops %d", s.drops.Load())
	}
}

// TestRunStateDirNotADirectory: a state_dir that is a regular file is a
// configuration error (exit 78), found before anything starts.
func TestRunStateDirNotADirectory(t *testing.T) {
	t.Parallel()
	f := filepath.Join(t.TempDir(), "state")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{f, filepath.Join(f, "sub")} {
		err := checkStateDir(dir)
		if !errors.Is(err, ErrConfig) {
			t.Errorf("checkStateDir(%s) = %v, want ErrConfig", dir, err)
		}
	}
	if err := checkStateDir(filepath.Join(t.TempDir(), "a", "b")); err != nil {
		t.Errorf("creatable state dir: %v", err)
	}
}
