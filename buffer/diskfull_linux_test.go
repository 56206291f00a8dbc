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

// TestDiskFullTmpfs fills a real 96 MiB tmpfs at full speed with the
// default space guard: nothing crashes (Badger writes through mmap, where
// ENOSPC is a SIGBUS), the guard sheds (evicts old telemetry) instead of
// refusing, and after a drain and GC appends work again and shedding ends.
// Needs root (mount); skipped otherwise. TestSpaceGuardTmpfs checks the
// guard's behaviour in detail.
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
	for i := 0; i < 2*96<<20/(64*2000); i++ { // twice the disk
		if _, err := q.AppendBatch(context.Background(), buffer.ClassTelemetry, batch); err != nil && !errors.Is(err, buffer.ErrFull) {
			t.Fatalf("filling the disk: %v", err)
		}
	}
	s := q.Stats()
	t.Logf("full: %d records, %d evicted, %d shed, disk %+v", s.Records, s.Classes[buffer.ClassTelemetry].Evicted, s.Classes[buffer.ClassTelemetry].Shed, s.Disk)
	if s.Classes[buffer.ClassTelemetry].Evicted == 0 || s.Records == 0 {
		t.Fatalf("full disk: %d records, evicted %d; want old records evicted, new ones kept", s.Records, s.Classes[buffer.ClassTelemetry].Evicted)
	}
	drain(t, q)
	for i := 0; ; i++ {
		q.CollectGarbage()
		if _, err := q.Append(context.Background(), buffer.ClassCritical, []byte("after")); err != nil {
			t.Fatalf("Append after drain and GC: %v", err)
		}
		if !q.Stats().Disk.Shedding {
			break
		}
		if i == 20 {
			t.Fatalf("still shedding after the drain: %+v", q.Stats().Disk)
		}
	}
}
