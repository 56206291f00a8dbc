package buffer

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// liveWAL returns the bytes of a memtable WAL that Badger wrote for a few
// entries, as a kill would leave it (the store is not closed first).
func liveWAL(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithMemTableSize(1 << 20).WithValueThreshold(256))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	for i := range 5 {
		if err := db.Update(func(txn *badger.Txn) error {
			return txn.Set([]byte{'k', byte(i)}, []byte("some value bytes"))
		}); err != nil {
			t.Fatal(err)
		}
	}
	mems, _ := filepath.Glob(filepath.Join(dir, "*.mem"))
	if len(mems) != 1 {
		t.Fatalf("want one WAL, found %v", mems)
	}
	b, err := os.ReadFile(mems[0])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCheckWALsAnyLength: a kill can leave a memtable WAL of any length,
// including one shorter than its header (Badger was creating it). The
// check must never panic (a panic there read as "store corrupt" and
// quarantined a store that a plain SIGKILL during start-up had left;
// TestSystemKillDuringBoot hit it once in ~10 runs), and a cut of the
// file's zero tail is not a sign of lost data.
func TestCheckWALsAnyLength(t *testing.T) {
	wal := liveWAL(t)
	end := walValidEnd(wal)
	if end <= walHeader {
		t.Fatalf("valid end %d of a WAL with 5 entries", end)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "00001.mem")
	lengths := []int{0, 1, walHeader - 1, walHeader, walHeader + 1, walHeader + 2, end - 1, end, end + 1, end + 4096, len(wal)}
	for n := 0; n < end; n += 7 {
		lengths = append(lengths, n)
	}
	for _, n := range lengths {
		if n > len(wal) {
			continue
		}
		if err := os.WriteFile(p, wal[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		suspect, err := checkWALs(dir)
		if err != nil {
			t.Fatalf("len %d: %v", n, err)
		}
		// Past the last whole entry only zeros: nothing lost. Cut inside an
		// entry: its first bytes are past the valid end, a sign of a torn
		// write (the seq continues above the reservation).
		if n >= end && suspect != "" {
			t.Errorf("len %d (valid end %d): suspect %q for a zero tail", n, end, suspect)
		}
		if n <= walHeader && suspect != "" {
			t.Errorf("len %d: suspect %q for a WAL without entries", n, suspect)
		}
		if got := walValidEnd(wal[:n]); got > n {
			t.Errorf("walValidEnd(len %d) = %d, past the end", n, got)
		}
	}
}

// FuzzWALValidEnd: arbitrary WAL bytes never panic the check and the valid
// end never lies past the data.
func FuzzWALValidEnd(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, walHeader))
	f.Add(make([]byte, walHeader+3))
	f.Fuzz(func(t *testing.T, b []byte) {
		if end := walValidEnd(b); end < 0 || end > len(b) {
			t.Fatalf("walValidEnd = %d for %d bytes", end, len(b))
		}
	})
}
