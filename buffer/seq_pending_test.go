package buffer

import (
	"context"
	"path/filepath"
	"testing"
)

// TestSeqNoJumpAfterKillDuringOpen simulates a power cut inside Open,
// between its seq-file and store writes: the next Open must continue the
// seq without a jump (nothing can have been appended in between), while a
// non-pending file ahead of the store (an older copy restored) still jumps.
func TestSeqNoJumpAfterKillDuringOpen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		mutate     func(s seqState) seqState
		contiguous bool
	}{
		{"killed before the store update", func(s seqState) seqState { s.Epoch++; s.Pending = true; return s }, true},
		{"killed after the store update", func(s seqState) seqState { s.Pending = true; return s }, true},
		{"older store restored", func(s seqState) seqState { s.Epoch++; return s }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "queue")
			opts := DefaultOptions(dir)
			opts.Sync = SyncAlways
			q, err := Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			var last uint64
			for range 3 {
				if last, err = q.Append(context.Background(), ClassTelemetry, []byte(`{}`)); err != nil {
					t.Fatal(err)
				}
			}
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			fs, ok, err := readSeqFile(seqPath(dir))
			if err != nil || !ok || fs.Pending {
				t.Fatalf("seq file after a clean close: %+v ok=%v err=%v", fs, ok, err)
			}
			if err := writeSeqFile(seqPath(dir), tt.mutate(fs)); err != nil {
				t.Fatal(err)
			}
			q, err = Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			next, err := q.Append(context.Background(), ClassTelemetry, []byte(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			if contiguous := next == last+1; contiguous != tt.contiguous {
				t.Errorf("after %d the next seq is %d (contiguous=%v)", last, next, contiguous)
			}
			if next <= last {
				t.Errorf("seq went backwards: %d after %d", next, last)
			}
		})
	}
}
