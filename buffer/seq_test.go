package buffer_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/buffer"
)

// copyDir copies the store directory as a backup/restore tool would.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.RemoveAll(dst); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
}

func TestSeqMonotonic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		sync buffer.SyncPolicy
		// between runs: what happens to the store directory
		restoreOld  bool
		dropSeqFile bool
	}{
		{name: "reopen group", sync: buffer.SyncGroup},
		{name: "reopen none", sync: buffer.SyncNone},
		{name: "restore older copy", sync: buffer.SyncGroup, restoreOld: true},
		{name: "restore older copy without seq file", sync: buffer.SyncGroup, restoreOld: true, dropSeqFile: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := testOptions(t)
			o.Sync = tt.sync
			backup := filepath.Join(t.TempDir(), "backup")
			var last uint64
			for run := range 3 {
				q, err := buffer.Open(o)
				if err != nil {
					t.Fatalf("Open run %d: %v", run, err)
				}
				for i := range 5 {
					s := mustAppend(t, q, buffer.Class(i%3), "x")
					if s <= last {
						t.Fatalf("run %d: seq %d after %d", run, s, last)
					}
					last = s
				}
				if err := q.Close(); err != nil {
					t.Fatal(err)
				}
				switch {
				case run == 0:
					copyDir(t, o.Dir, backup)
				case tt.restoreOld:
					copyDir(t, backup, o.Dir)
					if tt.dropSeqFile {
						if err := os.Remove(o.Dir + ".seq"); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
		})
	}
}

// TestSeqNoGapOnReopen: a clean or crashed restart of the same directory
// continues the seq without a gap (consumers read gaps as loss).
func TestSeqNoGapOnReopen(t *testing.T) {
	t.Parallel()
	o := testOptions(t)
	q := mustOpen(t, o)
	a := mustAppend(t, q, buffer.ClassEvent, "a")
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = mustOpen(t, o)
	if b := mustAppend(t, q, buffer.ClassEvent, "b"); b != a+1 {
		t.Fatalf("seq after reopen = %d, want %d", b, a+1)
	}
}

// TestSeqClockFloor: a brand-new store starts at the clock floor, so even
// losing the whole state directory never reuses a seq.
func TestSeqClockFloor(t *testing.T) {
	t.Parallel()
	o := testOptions(t)
	o.Now = func() time.Time { return t0 }
	q := mustOpen(t, o)
	if s := mustAppend(t, q, buffer.ClassEvent, "a"); s != uint64(t0.UnixMicro()) {
		t.Fatalf("first seq = %d, want clock floor %d", s, t0.UnixMicro())
	}
}

// TestOrphanTableNoSeqJump: a kill during a flush or compaction leaves a
// table the MANIFEST does not list, holding seqs the store still has (in
// the WAL or in listed tables). The next Open must continue the seq
// without a jump (consumers would see a gap of a whole reservation); only
// an orphan holding seqs above the store's counter (a damaged MANIFEST,
// covered by TestCorruptStoreFuzz) makes it jump.
func TestOrphanTableNoSeqJump(t *testing.T) {
	t.Parallel()
	o := testOptions(t)
	o.Sync = buffer.SyncGroup
	q, err := buffer.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for range 50 {
		last = mustAppend(t, q, buffer.ClassTelemetry, "x")
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	ssts, _ := filepath.Glob(filepath.Join(o.Dir, "*.sst"))
	if len(ssts) == 0 {
		t.Fatal("no table after a clean close")
	}
	b, err := os.ReadFile(ssts[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(o.Dir, "000999.sst"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	q, err = buffer.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = q.Close() }()
	if s := mustAppend(t, q, buffer.ClassTelemetry, "y"); s != last+1 {
		t.Fatalf("seq %d after %d: an orphan table holding no new seqs made the seq jump", s, last)
	}
}
