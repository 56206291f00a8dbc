package buffer_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcu-agent/tcu-agent/buffer"
)

func TestCorruptStoreQuarantined(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		corrupt func(t *testing.T, dir string)
	}{
		{"garbage in every file", func(t *testing.T, dir string) {
			ents, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				garbage := []byte(strings.Repeat("\xde\xad\xbe\xef garbage ", 64))
				if err := os.WriteFile(filepath.Join(dir, e.Name()), garbage, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"manifest truncated", func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, "MANIFEST"), 3); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := testOptions(t)
			q := mustOpen(t, o)
			before := mustAppend(t, q, buffer.ClassEvent, "lost")
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			tt.corrupt(t, o.Dir)

			q = mustOpen(t, o)
			if d := q.Stats().Degraded; !strings.Contains(d, "corrupt") {
				t.Fatalf("Degraded = %q, want a corruption reason", d)
			}
			moved, _ := filepath.Glob(o.Dir + ".corrupt-*")
			if len(moved) != 1 {
				t.Fatalf("quarantined copies = %v, want 1", moved)
			}
			if n := len(leaseAll(t, q)); n != 0 {
				t.Fatalf("fresh store has %d records", n)
			}
			if s := mustAppend(t, q, buffer.ClassEvent, "new"); s <= before {
				t.Fatalf("seq after quarantine %d <= %d", s, before)
			}
		})
	}
}

func TestOpenLockedIsError(t *testing.T) {
	t.Parallel()
	o := testOptions(t)
	mustOpen(t, o)
	if q, err := buffer.Open(o); err == nil {
		_ = q.Close()
		t.Fatal("second Open of a locked store succeeded")
	}
	if moved, _ := filepath.Glob(o.Dir + ".corrupt-*"); len(moved) != 0 {
		t.Fatalf("locked store was quarantined: %v", moved)
	}
}
