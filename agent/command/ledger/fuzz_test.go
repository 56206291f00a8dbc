package ledger_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tcu-agent/tcu-agent/agent/command/ledger"
)

// FuzzLedgerOpen: any file content opens without panic, loads only valid
// entries, and the ledger stays appendable and reloadable.
func FuzzLedgerOpen(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("1c291ca3 {\"id\":\"c-1\"}\n"))
	f.Add([]byte("00000000 {\"id\":\"x\",\"state\":\"executing\",\"expires\":1,\"updated\":1}\npartial"))
	f.Add([]byte("\x00\x00\n\n\n"))
	f.Fuzz(func(t *testing.T, content []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "ledger.log"), content, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := ledger.Open(dir)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		for _, e := range l.Unfinished() {
			if e.ID == "" || (e.State != ledger.Executing && e.State != ledger.Done) {
				t.Fatalf("invalid entry loaded: %+v", e)
			}
		}
		n := l.Len()
		_, existed := l.Get("fuzz-new")
		if err := l.Begin("fuzz-new", "door.lock", "", t0, t0); err != nil && !existed {
			t.Fatalf("Begin: %v", err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l2, err := ledger.Open(dir)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer l2.Close()
		if _, ok := l2.Get("fuzz-new"); !ok {
			t.Fatal("appended entry lost")
		}
		if want := n + 1; !existed && l2.Len() != want {
			t.Fatalf("reloaded %d entries, want %d", l2.Len(), want)
		}
	})
}
