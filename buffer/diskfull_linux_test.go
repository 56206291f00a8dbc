package buffer_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tcu-agent/tcu-agent/buffer"
)

// TestDiskFullTmpfs fills a real 96 MiB tmpfs: appends must end in ErrFull
// (never a crash: Badger writes through mmap, where ENOSPC is a SIGBUS), and
// after a drain and GC the space comes back. Needs root (mount); skipped
// otherwise.
func TestDiskFullTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })

	o := buffer.DefaultOptions(filepath.Join(mnt, "queue"))
	o.Sync = buffer.SyncNone
	o.MaxBytes = 1 << 30 // the disk, not the cap, is the limit here
	o.LiveWindow = -1
	q := mustOpen(t, o)
	batch := make([][]byte, 64)
	for i := range batch {
		batch[i] = make([]byte, 2000)
	}
	var err error
	for i := 0; i < 10000 && err == nil; i++ {
		_, err = q.AppendBatch(context.Background(), buffer.ClassTelemetry, batch)
	}
	if !errors.Is(err, buffer.ErrFull) {
		t.Fatalf("filling the disk ended with %v, want ErrFull", err)
	}
	s := q.Stats()
	t.Logf("full: %d records, %d evicted, degraded %q", s.Records, s.Classes[buffer.ClassTelemetry].Evicted, s.Degraded)
	if s.Degraded == "" || s.Classes[buffer.ClassTelemetry].Evicted == 0 {
		t.Fatalf("full disk: degraded %q, evicted %d; want both", s.Degraded, s.Classes[buffer.ClassTelemetry].Evicted)
	}
	drain(t, q)
	q.CollectGarbage()
	if _, err := q.Append(context.Background(), buffer.ClassCritical, []byte("after")); err != nil {
		t.Fatalf("Append after drain and GC: %v", err)
	}
}
