package buffer_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/buffer"
)

// TestGroupCommit: concurrent appends share syncs under SyncGroup; SyncAlways
// syncs every sequential append; SyncNone never syncs.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	const n = 64
	tests := []struct {
		name       string
		sync       buffer.SyncPolicy
		concurrent bool
		check      func(syncs uint64) bool
		want       string
	}{
		{"group concurrent", buffer.SyncGroup, true, func(s uint64) bool { return s > 0 && s < n/4 }, "0 < syncs < n/4"},
		{"always sequential", buffer.SyncAlways, false, func(s uint64) bool { return s == n }, "syncs == n"},
		{"always concurrent", buffer.SyncAlways, true, func(s uint64) bool { return s > 0 && s <= n }, "0 < syncs <= n"},
		{"none", buffer.SyncNone, true, func(s uint64) bool { return s == 0 }, "no syncs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := testOptions(t)
			o.Sync = tt.sync
			o.GroupWindow = buffer.MaxGroupWindow
			q := mustOpen(t, o)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				do := func() {
					if _, err := q.Append(context.Background(), buffer.ClassTelemetry, []byte{byte(i)}); err != nil {
						t.Errorf("Append: %v", err)
					}
				}
				if !tt.concurrent {
					do()
					continue
				}
				wg.Go(func() { <-start; do() })
			}
			close(start)
			wg.Wait()
			s := q.Stats()
			if s.Appends != n || !tt.check(s.Syncs) {
				t.Fatalf("%d appends, %d syncs; want %d appends, %s", s.Appends, s.Syncs, n, tt.want)
			}
		})
	}
}

func TestAppendInvalid(t *testing.T) {
	t.Parallel()
	q := mustOpen(t, testOptions(t))
	tests := []struct {
		name string
		c    buffer.Class
		size int
		want error
	}{
		{"bad class", 7, 1, buffer.ErrInvalid},
		{"too large", buffer.ClassEvent, buffer.MaxRecordBytes + 1, buffer.ErrTooLarge},
	}
	for _, tt := range tests {
		if _, err := q.Append(context.Background(), tt.c, make([]byte, tt.size)); !errors.Is(err, tt.want) {
			t.Errorf("%s: Append = %v, want %v", tt.name, err, tt.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := q.Append(ctx, buffer.ClassEvent, nil); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("Append with cancelled ctx = %v, want nil or context.Canceled", err)
	}
}

func TestOptionsInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mod  func(*buffer.Options)
	}{
		{"empty dir", func(o *buffer.Options) { o.Dir = "" }},
		{"bad sync", func(o *buffer.Options) { o.Sync = "sometimes" }},
		{"window too long", func(o *buffer.Options) { o.GroupWindow = buffer.MaxGroupWindow + 1 }},
		{"max window too long", func(o *buffer.Options) { o.GroupMaxWindow = buffer.LimitGroupMaxWindow + 1 }},
		{"negative fill", func(o *buffer.Options) { o.GroupFill = -1 }},
		{"negative cap", func(o *buffer.Options) { o.MaxBytes = -1 }},
		{"bad ttl class", func(o *buffer.Options) { o.TTL = map[buffer.Class]time.Duration{9: time.Second} }},
	}
	for _, tt := range tests {
		o := testOptions(t)
		tt.mod(&o)
		if q, err := buffer.Open(o); !errors.Is(err, buffer.ErrInvalid) {
			if q != nil {
				_ = q.Close()
			}
			t.Errorf("%s: Open = %v, want ErrInvalid", tt.name, err)
		}
	}
}

func TestAppendBatch(t *testing.T) {
	t.Parallel()
	o := testOptions(t)
	o.Sync = buffer.SyncGroup
	q := mustOpen(t, o)
	data := make([][]byte, 3000)
	for i := range data {
		data[i] = []byte{byte(i)}
	}
	seqs, err := q.AppendBatch(context.Background(), buffer.ClassEvent, data)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("seqs not increasing at %d: %d after %d", i, seqs[i], seqs[i-1])
		}
	}
	s := q.Stats()
	if s.Appends != 3000 || s.Syncs > 3 {
		t.Fatalf("%d appends in %d syncs, want 3000 in <= 3", s.Appends, s.Syncs)
	}
	recs := leaseAll(t, q)
	if len(recs) != 3000 || recs[0].Seq != seqs[0] || recs[2999].Data[0] != byte(2999%256) {
		t.Fatalf("leased %d records, want the batch in order", len(recs))
	}
	if _, err := q.AppendBatch(context.Background(), buffer.ClassEvent, [][]byte{make([]byte, buffer.MaxRecordBytes+1)}); !errors.Is(err, buffer.ErrTooLarge) {
		t.Fatalf("AppendBatch too large = %v, want ErrTooLarge", err)
	}
}

// TestFlushedRecordsReadable writes enough to flush several memtables and
// reads everything back. It guards the table-size rule in badger.go: with
// tables smaller than the memtable, Badger on 32-bit lost flushed tables.
// Run it on armv7 with: GOARCH=arm GOARM=7 go test -c ./buffer && qemu-arm-static ./buffer.test
func TestFlushedRecordsReadable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		size, workers int
	}{
		{"1 KB sequential", 1000, 1},
		{"4 KB concurrent", 4000, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := testOptions(t)
			o.Sync = buffer.SyncNone
			o.MaxBytes = 1 << 30
			q := mustOpen(t, o)
			const n = 3000
			data := make([]byte, tt.size)
			var wg sync.WaitGroup
			for g := range tt.workers {
				wg.Go(func() {
					for i := g; i < n; i += tt.workers {
						if _, err := q.Append(context.Background(), buffer.Class(i%3), data); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			if got := len(leaseAll(t, q)); got != n || q.Stats().Records != n {
				t.Fatalf("leased %d of %d records (stats %d)", got, n, q.Stats().Records)
			}
		})
	}
}
