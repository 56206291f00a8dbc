package buffer_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/buffer"
)

// idleOptions returns test options whose store closes after 30 ms unused.
func idleOptions(t testing.TB) buffer.Options {
	o := testOptions(t)
	o.IdleClose = 30 * time.Millisecond
	return o
}

// waitClosed waits until the store is closed for idleness.
func waitClosed(t *testing.T, q *buffer.Queue) buffer.Stats {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := q.Stats()
		if s.StoreClosed {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("store not closed for idleness after 20 s: %+v", s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIdleCloseKeepsEverything: a store closed for idleness keeps every
// record, reports them (counts and ages) without reopening, leases them
// in order once reopened, takes new appends with seqs above the old ones,
// and a full reopen of the queue finds the same state.
func TestIdleCloseKeepsEverything(t *testing.T) {
	t.Parallel()
	o := idleOptions(t)
	q := mustOpen(t, o)
	var seqs []uint64
	for i := range 30 {
		seqs = append(seqs, mustAppend(t, q, buffer.Class(i%3), fmt.Sprintf("r%02d", i)))
	}
	// Ack the first five (a gone set and a low-water mark to persist).
	recs, err := q.Lease(5, 0)
	if err != nil || len(recs) != 5 {
		t.Fatalf("Lease = %d, %v", len(recs), err)
	}
	for _, r := range recs {
		if err := q.Ack(r.Seq); err != nil {
			t.Fatal(err)
		}
	}
	s := waitClosed(t, q)
	if s.Records != 25 || s.StoreOpens != 0 {
		t.Fatalf("closed: records %d, opens %d; want 25, 0", s.Records, s.StoreOpens)
	}
	for c := range buffer.Class(buffer.NumClasses) {
		if s.Classes[c].Records > 0 && s.Classes[c].OldestAge <= 0 {
			t.Errorf("class %v: OldestAge %v while closed, want > 0", c, s.Classes[c].OldestAge)
		}
	}
	// Neither Stats, nor Release, nor a Lease with nothing it may take
	// reopens the store.
	q.Release(12345)
	if recs, err := q.LeaseClasses(10, 0, func(buffer.Class) bool { return false }); err != nil || len(recs) != 0 {
		t.Fatalf("LeaseClasses(none) = %d, %v", len(recs), err)
	}
	if s := q.Stats(); !s.StoreClosed || s.StoreOpens != 0 {
		t.Fatalf("after Stats/Release/empty lease: closed %v, opens %d; want still closed", s.StoreClosed, s.StoreOpens)
	}
	// A lease reopens it and finds every record, in class order.
	got := leaseAll(t, q)
	if len(got) != 25 {
		t.Fatalf("leased %d after reopen, want 25", len(got))
	}
	want := map[uint64]string{}
	for i, s := range seqs {
		want[s] = fmt.Sprintf("r%02d", i)
	}
	for _, r := range recs { // acked
		delete(want, r.Seq)
	}
	for _, r := range got {
		if want[r.Seq] != string(r.Data) {
			t.Fatalf("seq %d = %q, want %q", r.Seq, r.Data, want[r.Seq])
		}
	}
	if s := q.Stats(); s.StoreClosed || s.StoreOpens != 1 {
		t.Fatalf("after lease: closed %v, opens %d; want open, 1", s.StoreClosed, s.StoreOpens)
	}
	// Leased records keep it open.
	time.Sleep(10 * o.IdleClose)
	if s := q.Stats(); s.StoreClosed {
		t.Fatal("store closed with records leased")
	}
	q.Release(seqsOf(got)...)
	waitClosed(t, q)
	// An append reopens it; its seq is above every earlier one.
	n := mustAppend(t, q, buffer.ClassCritical, "after")
	if n <= seqs[len(seqs)-1] {
		t.Fatalf("seq after reopen %d, want > %d", n, seqs[len(seqs)-1])
	}
	waitClosed(t, q)
	if err := q.Close(); err != nil {
		t.Fatalf("Close while closed for idleness: %v", err)
	}
	o2 := testOptions(t)
	o2.Dir = o.Dir
	q2 := mustOpen(t, o2)
	if s := q2.Stats(); s.Records != 26 || s.Degraded != "" {
		t.Fatalf("reopened queue: %d records, degraded %q; want 26, none", s.Records, s.Degraded)
	}
	if all := leaseAll(t, q2); len(all) != 26 {
		t.Fatalf("reopened queue leased %d, want 26", len(all))
	}
}

// TestIdleCloseGCLoopSleeps: once the store is closed, the GC goroutine
// does not wake at all (no idle deadline, no GC pass for the closed store).
func TestIdleCloseGCLoopSleeps(t *testing.T) {
	t.Parallel()
	o := idleOptions(t)
	o.GCInterval = 20 * time.Millisecond
	q := mustOpen(t, o)
	mustAppend(t, q, buffer.ClassTelemetry, "a")
	recs := leaseAll(t, q)
	if err := q.Ack(seqsOf(recs)...); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, q, buffer.ClassEvent, "b")
	waitClosed(t, q)
	time.Sleep(5 * o.GCInterval) // a rearm signalled while it closed
	before := buffer.GCIterations(q)
	time.Sleep(30 * o.GCInterval)
	if n := buffer.GCIterations(q) - before; n > 0 {
		t.Fatalf("GC loop woke %d times while the store was closed, want 0", n)
	}
}

// TestIdleCloseLocksStore: Badger's directory lock goes with the closed
// store, the queue's own lock does not: another Open of the directory
// fails while the first queue is closed for idleness, and succeeds after
// the first is closed for good.
func TestIdleCloseLocksStore(t *testing.T) {
	t.Parallel()
	o := idleOptions(t)
	q := mustOpen(t, o)
	mustAppend(t, q, buffer.ClassEvent, "a")
	waitClosed(t, q)
	q2, err := buffer.Open(o)
	if err == nil {
		_ = q2.Close()
		t.Fatal("second Open of a store closed for idleness succeeded")
	}
	if !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second Open: %v; want it to say the store is in use", err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q3 := mustOpen(t, o)
	if s := q3.Stats(); s.Records != 1 {
		t.Fatalf("after handover: %d records, want 1", s.Records)
	}
}

// TestIdleCloseTTL: a record's TTL deadline reopens a closed store to
// expire it.
func TestIdleCloseTTL(t *testing.T) {
	t.Parallel()
	o := idleOptions(t)
	o.TTL = map[buffer.Class]time.Duration{buffer.ClassTelemetry: 400 * time.Millisecond}
	q := mustOpen(t, o)
	mustAppend(t, q, buffer.ClassTelemetry, "x")
	mustAppend(t, q, buffer.ClassEvent, "keep")
	waitClosed(t, q)
	deadline := time.Now().Add(20 * time.Second)
	for q.Stats().Classes[buffer.ClassTelemetry].Expired == 0 {
		if time.Now().After(deadline) {
			t.Fatal("record not expired while the store was closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s := waitClosed(t, q) // and it closes again
	if s.StoreOpens < 1 || s.Records != 1 {
		t.Fatalf("after expiry: opens %d, records %d; want >= 1, 1", s.StoreOpens, s.Records)
	}
}

// TestIdleCloseStorageFault: a store that cannot be reopened for a storage
// reason (here its directory replaced by a file) fails the append with
// ErrStorage and loses nothing: once the directory is back, the next
// append reopens it and every record is there.
func TestIdleCloseStorageFault(t *testing.T) {
	t.Parallel()
	o := idleOptions(t)
	q := mustOpen(t, o)
	for i := range 5 {
		mustAppend(t, q, buffer.ClassEvent, fmt.Sprint("e", i))
	}
	waitClosed(t, q)
	aside := o.Dir + ".aside"
	if err := os.Rename(o.Dir, aside); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(o.Dir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := q.Append(context.Background(), buffer.ClassEvent, []byte("refused"))
	if !errors.Is(err, buffer.ErrStorage) {
		t.Fatalf("append with the store unreachable: %v; want ErrStorage", err)
	}
	if s := q.Stats(); !s.StoreClosed || s.Degraded != "" {
		t.Fatalf("after the failed reopen: closed %v, degraded %q; want closed, not degraded", s.StoreClosed, s.Degraded)
	}
	if err := os.Remove(o.Dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(aside, o.Dir); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, q, buffer.ClassEvent, "e5")
	if got := leaseAll(t, q); len(got) != 6 {
		t.Fatalf("leased %d after the directory came back, want 6", len(got))
	}
}

// TestIdleCloseDamagedWhileClosed: a store damaged while closed (every
// table file overwritten) is handled like damage found while open: moved
// aside, a fresh store in its place, Degraded says so, the append that
// found it succeeds and seqs go on above every earlier one.
func TestIdleCloseDamagedWhileClosed(t *testing.T) {
	t.Parallel()
	o := idleOptions(t)
	q := mustOpen(t, o)
	var last uint64
	for i := range 50 {
		last = mustAppend(t, q, buffer.ClassTelemetry, strings.Repeat("y", 100+i))
	}
	waitClosed(t, q)
	files, _ := filepath.Glob(filepath.Join(o.Dir, "*"))
	damaged := 0
	for _, f := range files {
		if base := filepath.Base(f); base == "MANIFEST" || strings.HasSuffix(base, ".sst") {
			if err := os.WriteFile(f, []byte(strings.Repeat("\xff", 4096)), 0o600); err != nil {
				t.Fatal(err)
			}
			damaged++
		}
	}
	if damaged == 0 {
		t.Fatalf("no MANIFEST or table to damage in %v", files)
	}
	n, err := q.Append(context.Background(), buffer.ClassCritical, []byte("alarm"))
	if err != nil {
		t.Fatalf("append into a store damaged while closed: %v", err)
	}
	if n <= last {
		t.Fatalf("seq %d after the repair, want > %d", n, last)
	}
	s := q.Stats()
	if s.Degraded == "" || s.StoreClosed {
		t.Fatalf("after the repair: degraded %q, closed %v; want degraded, open", s.Degraded, s.StoreClosed)
	}
	if got := leaseAll(t, q); len(got) != 1 || string(got[0].Data) != "alarm" {
		t.Fatalf("fresh store holds %d records, want the alarm only", len(got))
	}
	if m, _ := filepath.Glob(o.Dir + ".corrupt-*"); len(m) != 1 {
		t.Fatalf("quarantined stores: %v, want one", m)
	}
}

// TestIdleCloseOff: a negative IdleClose never closes the store.
func TestIdleCloseOff(t *testing.T) {
	t.Parallel()
	o := testOptions(t)
	o.IdleClose = -1
	q := mustOpen(t, o)
	mustAppend(t, q, buffer.ClassEvent, "a")
	time.Sleep(300 * time.Millisecond)
	if s := q.Stats(); s.StoreClosed {
		t.Fatal("store closed with IdleClose < 0")
	}
}
