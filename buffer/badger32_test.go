package buffer

import (
	"encoding/binary"
	"os"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestBadger32Repro reproduces a Badger v4.9.6 failure on 32-bit targets
// (GOARCH=386 natively, GOARCH=arm GOARM=7 under qemu-user) without any
// queue code: transactions of 64 × 2 KB records (here also overwriting one
// small key, as the queue does with "z/seq") end, after some flushes and
// compactions, in a panic reading a table ("slice bounds out of range") or
// in records missing from iteration. On amd64 all records come back.
// The "queue options" variant (chunk layout) has passed every run; the
// Badger-defaults variant fails. It is opt-in (TCU_BADGER32_REPRO=1)
// because it fails on 32-bit:
//
//	GOARCH=386 go test -c -o b386.test ./buffer && TCU_BADGER32_REPRO=1 ./b386.test -test.run Badger32 -test.v
func TestBadger32Repro(t *testing.T) {
	if os.Getenv("TCU_BADGER32_REPRO") == "" {
		t.Skip("set TCU_BADGER32_REPRO=1 (fails on 32-bit, see docs/buffer.md)")
	}
	q, _ := DefaultOptions("").withDefaults()
	variants := []struct {
		name string
		opts func(dir string) badger.Options
	}{
		{"queue options", func(dir string) badger.Options { q.Dir = dir; return badgerOptions(q).WithLogger(nil) }},
		{"badger defaults, 8 MB memtable", func(dir string) badger.Options {
			return badger.DefaultOptions(dir).WithMemTableSize(8 << 20).WithLogger(nil)
		}},
	}
	const n = 44800
	for _, v := range variants {
		for run := range 3 {
			db, err := badger.Open(v.opts(t.TempDir()))
			if err != nil {
				t.Fatal(err)
			}
			val := make([]byte, 2000)
			for i := 0; i < n; i += 64 {
				err := db.Update(func(txn *badger.Txn) error {
					for j := i; j < i+64; j++ {
						if err := txn.Set(binary.BigEndian.AppendUint64([]byte("r"), uint64(j)), val); err != nil {
							return err
						}
					}
					return txn.Set([]byte("z/seq"), putU64(uint64(i)))
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			got := 0
			_ = db.View(func(txn *badger.Txn) error {
				it := txn.NewIterator(badger.DefaultIteratorOptions)
				defer it.Close()
				for it.Rewind(); it.Valid(); it.Next() {
					got++
				}
				return nil
			})
			_ = db.Close()
			if got != n+1 {
				t.Errorf("%s run %d: wrote %d keys, iterated %d", v.name, run, n+1, got)
			}
		}
	}
}
