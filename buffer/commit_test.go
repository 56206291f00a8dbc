package buffer_test

import (
	"context"
	"errors"
	"strings"
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

// TestDiskFull walks the space guard through its states with a simulated
// file system (MinFree 1 MiB, margin 512 KiB): below the floor the queue
// evicts only the shortfall, oldest telemetry first, and keeps appending
// (new records evict older ones); below half the floor only critical
// records are stored, below a quarter nothing; above floor+margin it
// recovers without a restart, and the cap grows back per GC pass.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	o := testOptions(t)
	o.MinFree = 1 << 20
	var mu sync.Mutex
	free := uint64(1 << 30)
	buffer.SetFreeSpace(&o, func(string) (uint64, error) {
		mu.Lock()
		defer mu.Unlock()
		return free, nil
	})
	setFree := func(n uint64) { mu.Lock(); free = n; mu.Unlock() }
	q := mustOpen(t, o)
	rec := strings.Repeat("t", 100<<10-buffer.RecordOverhead) // 100 KiB accounted
	var tele []uint64
	for range 16 {
		tele = append(tele, mustAppend(t, q, buffer.ClassTelemetry, rec))
	}
	crit := mustAppend(t, q, buffer.ClassCritical, "r")
	ev := func() uint64 { return q.Stats().Classes[buffer.ClassTelemetry].Evicted }

	// Below the floor: shortfall 1.5 MiB - 900 KiB = 636 KiB: the 7 oldest
	// telemetry records go (700 KiB), and the new one evicts one more.
	setFree(900 << 10)
	last := mustAppend(t, q, buffer.ClassTelemetry, rec)
	s := q.Stats()
	if ev() != 8 || s.Classes[buffer.ClassCritical].Records != 1 || !s.Disk.Shedding || s.Disk.Transitions != 1 {
		t.Fatalf("below the floor: evicted %d, critical %d, disk %+v; want 8, 1, shedding once", ev(), s.Classes[buffer.ClassCritical].Records, s.Disk)
	}
	if s.Degraded == "" {
		t.Fatal("not degraded while shedding")
	}
	// GC gave space back, but not above floor+margin: still shedding (no
	// flapping), the cap holds, and each new record replaces an old one.
	setFree(1200 << 10)
	for range 5 {
		mustAppend(t, q, buffer.ClassTelemetry, rec)
	}
	if s := q.Stats(); !s.Disk.Shedding || s.Disk.Transitions != 1 {
		t.Fatalf("between floor and floor+margin: %+v, want still shedding", s.Disk)
	}
	if ev() != 8+5 {
		t.Fatalf("evicted %d after 5 more appends, want %d", ev(), 8+5)
	}
	recs := leaseAll(t, q)
	if recs[0].Seq != crit || recs[len(recs)-1].Class != buffer.ClassTelemetry {
		t.Fatalf("lease while shedding: first %d, want the critical record %d", recs[0].Seq, crit)
	}
	for _, r := range recs {
		if r.Class == buffer.ClassTelemetry && r.Seq < tele[13] {
			t.Fatalf("old telemetry %d kept, newer evicted", r.Seq)
		}
	}
	q.Release(seqsOf(recs)...)

	// The reserve: below half the floor only critical records.
	setFree(400 << 10)
	if _, err := q.Append(context.Background(), buffer.ClassTelemetry, []byte("t")); !errors.Is(err, buffer.ErrFull) {
		t.Fatalf("telemetry below half the floor = %v, want ErrFull", err)
	}
	mustAppend(t, q, buffer.ClassCritical, "in the reserve")
	setFree(100 << 10)
	if _, err := q.Append(context.Background(), buffer.ClassCritical, []byte("r")); !errors.Is(err, buffer.ErrFull) {
		t.Fatalf("critical below a quarter of the floor = %v, want ErrFull", err)
	}

	// Recovery: above floor+margin shedding ends; the cap grows per pass.
	setFree(1600 << 10)
	mustAppend(t, q, buffer.ClassCritical, "r3")
	s = q.Stats()
	if s.Disk.Shedding || s.Disk.Transitions != 2 || s.Degraded != "" {
		t.Fatalf("after space came back: %+v, degraded %q", s.Disk, s.Degraded)
	}
	capBefore := s.Disk.Cap
	q.CollectGarbage()
	mustAppend(t, q, buffer.ClassCritical, "r4")
	if c := q.Stats().Disk.Cap; c != capBefore+(64<<10)/2 {
		t.Fatalf("cap after a pass with 64 KiB surplus = %d, want %d", c, capBefore+(64<<10)/2)
	}
	setFree(1 << 30)
	q.CollectGarbage()
	mustAppend(t, q, buffer.ClassTelemetry, rec)
	if c := q.Stats().Disk.Cap; c != 0 {
		t.Fatalf("cap with plenty of space = %d, want none", c)
	}
	_ = last
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
