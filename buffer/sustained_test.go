package buffer_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/tcu-agent/tcu-agent/buffer"
)

// TestSustainedWritesAllPresent writes enough batches for many memtable
// flushes, value-log rotations and compactions (the load under which
// Badger v4.9.6 with its default options loses records on 32-bit targets,
// badger32_test.go), reopens, and checks that every record is there once,
// in order, with its data. CI runs it on amd64, arm64 and armv7.
func TestSustainedWritesAllPresent(t *testing.T) {
	t.Parallel()
	o := testOptions(t)
	o.Sync = buffer.SyncNone
	o.MaxBytes = 1 << 30
	q := mustOpen(t, o)
	batches := 700 // 700 x 64 x ~2 KB = 90 MB
	if testing.Short() {
		batches = 150
	}
	var want []uint64
	for i := range batches {
		// Half the batches hold small records (inline chunks), half large
		// ones (value-log chunks).
		size := 2000
		if i%2 == 1 {
			size = 40
		}
		data := make([][]byte, 64)
		for j := range data {
			data[j] = payload(uint64(i*64+j), size)
		}
		c := buffer.Class(i % 3)
		seqs, err := q.AppendBatch(context.Background(), c, data)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, seqs...)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = mustOpen(t, o)
	if s := q.Stats(); s.Records != int64(len(want)) {
		t.Fatalf("after reopen Stats.Records = %d, want %d", s.Records, len(want))
	}
	got := map[uint64]bool{}
	for _, r := range leaseAll(t, q) {
		if got[r.Seq] {
			t.Fatalf("seq %d leased twice", r.Seq)
		}
		got[r.Seq] = true
		idx := binary.BigEndian.Uint64(r.Data)
		if want[idx] != r.Seq || !bytes.Equal(r.Data, payload(idx, len(r.Data))) {
			t.Fatalf("seq %d: record %d damaged or misplaced", r.Seq, idx)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("leased %d of %d records", len(got), len(want))
	}
}

// payload returns n bytes: idx, then a pattern derived from it.
func payload(idx uint64, n int) []byte {
	p := make([]byte, n)
	binary.BigEndian.PutUint64(p, idx)
	for i := 8; i < n; i++ {
		p[i] = byte(idx) ^ byte(i)
	}
	return p
}
