package buffer

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAutoFloor(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ total, want int64 }{
		{16 << 20, 2 << 20},
		{24 << 20, 3 << 20},
		{40 << 20, 5 << 20},
		{64 << 20, 8 << 20},
		{4 << 30, 32 << 20},
		{1 << 20, 2 << 20},
	} {
		if got := autoFloor(uint64(tt.total)); got != tt.want {
			t.Errorf("autoFloor(%d MiB) = %d, want %d", tt.total>>20, got, tt.want)
		}
	}
}

// TestDiskFull walks the space guard through its states on a simulated
// file system (MinFree 1 MiB), driving the GC passes itself: below the
// floor the queue's size is frozen and new records replace old ones;
// after a pass that still finds free space below the floor it evicts only
// the shortfall, oldest telemetry first, never critical; below half the
// floor only critical records are stored, below a quarter nothing; at
// twice the floor it recovers without a restart and the cap grows back.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	o := DefaultOptions(t.TempDir() + "/queue")
	o.LiveWindow = -1
	o.GCInterval = time.Hour
	o.MinFree = 1 << 20
	var mu sync.Mutex
	free := uint64(1 << 30)
	o.diskSpace = func(string) (uint64, uint64, error) {
		mu.Lock()
		defer mu.Unlock()
		return free, 1 << 40, nil
	}
	setFree := func(n uint64) { mu.Lock(); free = n; mu.Unlock() }
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = q.Close() }()
	noKicks := func() { q.guard.lastPass = time.Now().Add(time.Hour) } // the test runs the passes
	q.mu.Lock()
	noKicks()
	q.mu.Unlock()
	pass := func() {
		q.mu.Lock()
		q.afterGCLocked()
		noKicks()
		q.mu.Unlock()
	}
	app := func(c Class, data string) (uint64, error) {
		return q.Append(context.Background(), c, []byte(data))
	}
	must := func(c Class, data string) uint64 {
		t.Helper()
		s, err := app(c, data)
		if err != nil {
			t.Fatalf("Append %v: %v", c, err)
		}
		return s
	}
	rec := strings.Repeat("t", 100<<10-RecordOverhead) // 100 KiB accounted
	var tele []uint64
	for range 16 {
		tele = append(tele, must(ClassTelemetry, rec))
	}
	crit := must(ClassCritical, "r")
	ev := func() uint64 { return q.Stats().Classes[ClassTelemetry].Evicted }

	// Below the floor: the size is frozen; each new record replaces one.
	setFree(900 << 10)
	for range 3 {
		must(ClassTelemetry, rec)
	}
	if s := q.Stats(); ev() != 3 || s.Disk.Shedding || s.Disk.Cap == 0 {
		t.Fatalf("frozen: evicted %d, disk %+v; want 3, not shedding yet", ev(), s.Disk)
	}
	// A pass that still finds free < floor: shortfall 1.5 MiB - 900 KiB
	// = 636 KiB, 7 records of 100 KiB.
	pass()
	s := q.Stats()
	if ev() != 3+7 || !s.Disk.Shedding || s.Disk.Transitions != 1 || s.Classes[ClassCritical].Records != 1 {
		t.Fatalf("after a pass below the floor: evicted %d, disk %+v, critical %d; want 10, shedding once, 1",
			ev(), s.Disk, s.Classes[ClassCritical].Records)
	}
	if s.Degraded == "" {
		t.Fatal("not degraded while shedding")
	}
	// Space came back, but not to twice the floor: still shedding (no
	// flapping), nothing more evicted by the pass.
	setFree(1500 << 10)
	pass()
	must(ClassTelemetry, rec)
	if s := q.Stats(); !s.Disk.Shedding || s.Disk.Transitions != 1 || ev() != 3+7+1 {
		t.Fatalf("between floor and 2*floor: %+v, evicted %d; want still shedding, 11", s.Disk, ev())
	}
	recs, err := q.Lease(100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if recs[0].Seq != crit {
		t.Fatalf("lease while shedding: first %d, want the critical record %d", recs[0].Seq, crit)
	}
	for _, r := range recs[1:] {
		if r.Seq < tele[11] {
			t.Fatalf("old telemetry %d kept, newer evicted", r.Seq)
		}
	}
	q.Release(seqsOf(recs)...)

	// The reserve: below half the floor only critical records.
	setFree(400 << 10)
	if _, err := app(ClassTelemetry, "t"); !errors.Is(err, ErrFull) {
		t.Fatalf("telemetry below half the floor = %v, want ErrFull", err)
	}
	must(ClassCritical, "in the reserve")
	setFree(100 << 10)
	if _, err := app(ClassCritical, "r"); !errors.Is(err, ErrFull) {
		t.Fatalf("critical below a quarter of the floor = %v, want ErrFull", err)
	}
	if q.Stats().Degraded == "" {
		t.Fatal("not degraded while refusing")
	}

	// Recovery at twice the floor, and the cap grows by half the surplus
	// per pass.
	setFree(2<<20 + 200<<10)
	pass()
	s = q.Stats()
	if s.Disk.Shedding || s.Disk.Transitions != 2 {
		t.Fatalf("after space came back: %+v", s.Disk)
	}
	capBefore := s.Disk.Cap
	pass()
	must(ClassCritical, "r4")
	if s := q.Stats(); s.Disk.Cap != capBefore+(100<<10) || s.Degraded != "" {
		t.Fatalf("cap after a pass with 200 KiB surplus = %d, want %d; degraded %q", s.Disk.Cap, capBefore+(100<<10), s.Degraded)
	}
	setFree(1 << 30)
	pass()
	must(ClassTelemetry, rec)
	if c := q.Stats().Disk.Cap; c != 0 {
		t.Fatalf("cap with plenty of space = %d, want none", c)
	}
}

// TestDiskFullRecoversPromptly: the queue was drained while the disk was
// full (cap frozen at almost nothing, telemetry refused), then another
// program frees the space. With GCInterval an hour, appends must be
// accepted again within seconds, without a restart and without a GC pass
// driven from outside: the guard re-checks the space itself.
func TestDiskFullRecoversPromptly(t *testing.T) {
	t.Parallel()
	o := DefaultOptions(t.TempDir() + "/queue")
	o.LiveWindow = -1
	o.GCInterval = time.Hour
	o.MinFree = 1 << 20
	var mu sync.Mutex
	free := uint64(900 << 10) // below the floor from the start
	o.diskSpace = func(string) (uint64, uint64, error) {
		mu.Lock()
		defer mu.Unlock()
		return free, 1 << 40, nil
	}
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = q.Close() }()
	ctx := context.Background()
	if _, err := q.Append(ctx, ClassCritical, []byte("door.lock response")); err != nil {
		t.Fatalf("critical below the floor: %v", err)
	}
	rec := []byte(strings.Repeat("t", 4<<10))
	if _, err := q.Append(ctx, ClassTelemetry, rec); !errors.Is(err, ErrFull) {
		t.Fatalf("telemetry with the queue frozen empty = %v, want ErrFull", err)
	}
	mu.Lock()
	free = 1 << 30
	mu.Unlock()
	freed := time.Now()
	for {
		_, err := q.Append(ctx, ClassTelemetry, rec)
		if err == nil && !q.Stats().Disk.Shedding {
			break
		}
		if err != nil && !errors.Is(err, ErrFull) {
			t.Fatal(err)
		}
		if time.Since(freed) > 10*time.Second {
			t.Fatalf("telemetry still refused %v after the space came back: %v, disk %+v", time.Since(freed), err, q.Stats().Disk)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("telemetry accepted again %v after the space came back; disk %+v", time.Since(freed).Round(time.Millisecond), q.Stats().Disk)
}

// TestDiskFullBandStoresAgain: the shortfall was larger than the queue
// (another program took the space), so a pass evicted it to nothing; the
// space then comes back only part of the way, into the hysteresis band
// (floor <= free < 2*floor). The queue must store telemetry again there,
// up to what keeps free space at 1.75*floor, not refuse it until free
// space reaches twice the floor.
func TestDiskFullBandStoresAgain(t *testing.T) {
	t.Parallel()
	o := DefaultOptions(t.TempDir() + "/queue")
	o.LiveWindow = -1
	o.GCInterval = time.Hour
	o.MinFree = 1 << 20
	var mu sync.Mutex
	free := uint64(1 << 30)
	o.diskSpace = func(string) (uint64, uint64, error) {
		mu.Lock()
		defer mu.Unlock()
		return free, 1 << 40, nil
	}
	setFree := func(n uint64) { mu.Lock(); free = n; mu.Unlock() }
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = q.Close() }()
	pass := func() {
		q.mu.Lock()
		q.afterGCLocked()
		q.guard.lastPass = time.Now().Add(time.Hour) // the test runs the passes
		q.mu.Unlock()
	}
	ctx := context.Background()
	rec := []byte(strings.Repeat("t", 10<<10-RecordOverhead)) // 10 KiB accounted
	for range 20 {
		if _, err := q.Append(ctx, ClassTelemetry, rec); err != nil {
			t.Fatal(err)
		}
	}
	// 200 KiB queued; another program leaves 800 KiB: the shortfall to
	// 1.5 MiB is 736 KiB, more than the queue.
	setFree(800 << 10)
	pass()
	if s := q.Stats(); s.Records != 0 || !s.Disk.Shedding {
		t.Fatalf("after the pass: %d records, %+v; want the queue evicted, shedding", s.Records, s.Disk)
	}
	if _, err := q.Append(ctx, ClassTelemetry, rec); !errors.Is(err, ErrFull) {
		t.Fatalf("telemetry with the cap at nothing = %v, want ErrFull", err)
	}
	// Space comes back to 1942 KiB (in the band): room above 1.75 MiB
	// (1792 KiB) is 150 KiB, the cap grows to half of it.
	setFree(1942 << 10)
	pass()
	s := q.Stats()
	if !s.Disk.Shedding || s.Disk.Cap != 75<<10 {
		t.Fatalf("in the band: %+v; want still shedding, cap 75 KiB", s.Disk)
	}
	for i := range 7 {
		if _, err := q.Append(ctx, ClassTelemetry, rec); err != nil {
			t.Fatalf("telemetry %d in the band: %v", i, err)
		}
	}
	if n := q.Stats().Records; n != 7 {
		t.Fatalf("%d records stored in the band, want 7 (the cap: 75 KiB)", n)
	}
	// Below 1.75*floor the cap does not grow: new records replace old ones.
	setFree(1700 << 10)
	pass()
	if _, err := q.Append(ctx, ClassTelemetry, rec); err != nil {
		t.Fatal(err)
	}
	if s := q.Stats(); s.Records != 7 || s.Disk.Cap != 75<<10 || s.Disk.Transitions != 1 {
		t.Fatalf("at 1.7 MiB free: %d records, %+v; want 7, cap unchanged, 1 transition", s.Records, s.Disk)
	}
}
