package buffer

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestIdleCloseThatHangs: an idle close whose DB.Close does not return
// (a flush on a disk that filled up or hangs) does not hold the queue:
// Stats answers, a call that needs the store fails with ErrStorage rather
// than blocking, and once the close returns the next call reopens the
// store with every record.
func TestIdleCloseThatHangs(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	o := DefaultOptions(t.TempDir() + "/queue")
	o.MinFree = -1
	o.IdleClose = 30 * time.Millisecond
	o.idleCloseWait = 50 * time.Millisecond
	o.faultHook = func(op string) {
		if op == "idle close" {
			<-release
		}
	}
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for range 3 {
		if _, err := q.Append(context.Background(), ClassEvent, []byte("kept")); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		q.mu.Lock()
		hanging := q.idle.closing != nil
		q.mu.Unlock()
		if hanging {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the idle close never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if s := q.Stats(); !s.StoreClosed || s.Records != 3 {
		t.Fatalf("while the close hangs: closed %v, records %d; want closed, 3", s.StoreClosed, s.Records)
	}
	start := time.Now()
	_, err = q.Append(context.Background(), ClassEvent, []byte("refused"))
	if !errors.Is(err, ErrStorage) {
		t.Fatalf("append while the close hangs: %v; want ErrStorage", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("append blocked %v behind the hanging close", d)
	}
	close(release)
	deadline = time.Now().Add(20 * time.Second)
	for {
		_, err := q.Append(context.Background(), ClassEvent, []byte("after"))
		if err == nil {
			break
		}
		if !errors.Is(err, ErrStorage) || time.Now().After(deadline) {
			t.Fatalf("append after the close returned: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	recs, err := q.Lease(100, 0)
	if err != nil || len(recs) != 4 {
		t.Fatalf("Lease = %d records, %v; want 4", len(recs), err)
	}
}

// TestIdleCloseNotOnAFullDisk: below the space guard's floor the store is
// not closed for idleness (closing writes a table); it closes once the
// space is back.
func TestIdleCloseNotOnAFullDisk(t *testing.T) {
	t.Parallel()
	var free atomic.Uint64
	free.Store(3 << 20)
	o := DefaultOptions(t.TempDir() + "/queue")
	o.MinFree = 4 << 20
	o.IdleClose = 20 * time.Millisecond
	o.diskSpace = func(string) (uint64, uint64, error) { return free.Load(), 1 << 30, nil }
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if _, err := q.Append(context.Background(), ClassCritical, []byte("x")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * o.IdleClose)
	if q.Stats().StoreClosed {
		t.Fatal("store closed for idleness below the space floor")
	}
	free.Store(100 << 20)
	deadline := time.Now().Add(20 * time.Second)
	for !q.Stats().StoreClosed {
		if time.Now().After(deadline) {
			t.Fatal("store not closed once the space came back")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIdleCloseWaitAdapts: a store reopened sooner than it waited before
// closing doubles its wait (records just slower than IdleClose would
// otherwise close and reopen it on every record), up to maxIdleStretch×
// IdleClose; a close that lasts 4× the wait halves it back.
func TestIdleCloseWaitAdapts(t *testing.T) {
	t.Parallel()
	o := DefaultOptions(t.TempDir() + "/queue")
	o.MinFree = -1
	// 100 ms: a "quick" reopen (an append right after the close) must
	// come in under it on a loaded machine under -race.
	o.IdleClose = 100 * time.Millisecond
	o.Sync = SyncAlways // no group window between the append and the reopen
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	wait := func() time.Duration { q.mu.Lock(); defer q.mu.Unlock(); return q.idleWaitFor() }
	closed := func() {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !q.Stats().StoreClosed {
			if time.Now().After(deadline) {
				t.Fatal("store never closed")
			}
			time.Sleep(time.Millisecond)
		}
	}
	appendOne := func() {
		t.Helper()
		if _, err := q.Append(context.Background(), ClassEvent, []byte("r")); err != nil {
			t.Fatal(err)
		}
	}
	appendOne()
	for i, want := range []time.Duration{200, 400, 800, 1600, 1600} {
		closed()
		appendOne() // at once: the close did not pay
		if got := wait(); got != want*time.Millisecond {
			t.Fatalf("after quick reopen %d: wait %v, want %v", i+1, got, want*time.Millisecond)
		}
	}
	closed()
	time.Sleep(5 * wait()) // a close that paid
	appendOne()
	if got := wait(); got != 800*time.Millisecond {
		t.Fatalf("after a long close: wait %v, want 800ms", got)
	}
}
