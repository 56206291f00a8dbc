package buffertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcu-agent/tcu-agent/buffer"
)

// t0 is the suite's fake clock start.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// Run runs the conformance suite against open. Every subtest opens its own
// queue with t.TempDir() as Dir.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"PriorityOrder", testPriorityOrder},
		{"LiveFirst", testLiveFirst},
		{"PartialAck", testPartialAck},
		{"Release", testRelease},
		{"LeaseLimits", testLeaseLimits},
		{"NoDoubleLease", testNoDoubleLease},
		{"Eviction", testEviction},
		{"CriticalNeverEvicted", testCriticalNeverEvicted},
		{"ByteCap", testByteCap},
		{"TTL", testTTL},
		{"Ready", testReady},
		{"Stats", testStats},
		{"AckUnknown", testAckUnknown},
		{"Closed", testClosed},
		{"Concurrent", testConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open)
		})
	}
}

// options returns the suite's base options: fake clock, pure oldest-first.
func options(t testing.TB, clk *Clock) buffer.Options {
	o := buffer.DefaultOptions(t.TempDir() + "/queue")
	o.Sync = buffer.SyncNone
	o.LiveWindow = -1
	o.Now = clk.Now
	o.MinFree = -1
	return o
}

func openQ(t testing.TB, open Opener, o buffer.Options) Queue {
	t.Helper()
	q := open(t, o)
	t.Cleanup(func() { _ = q.Close() })
	return q
}

// entry is what the suite compares: class and payload.
type entry struct {
	Class buffer.Class
	Data  string
}

func appendAll(t testing.TB, q Queue, es ...entry) []uint64 {
	t.Helper()
	seqs := make([]uint64, len(es))
	for i, e := range es {
		s, err := q.Append(context.Background(), e.Class, []byte(e.Data))
		if err != nil {
			t.Fatalf("Append(%v, %q): %v", e.Class, e.Data, err)
		}
		if i > 0 && s <= seqs[i-1] {
			t.Fatalf("Append seq %d after %d: not increasing", s, seqs[i-1])
		}
		seqs[i] = s
	}
	return seqs
}

func lease(t testing.TB, q Queue, max, maxBytes int) ([]entry, []uint64) {
	t.Helper()
	recs, err := q.Lease(max, maxBytes)
	if err != nil {
		t.Fatalf("Lease(%d, %d): %v", max, maxBytes, err)
	}
	var es []entry
	var seqs []uint64
	for _, r := range recs {
		es = append(es, entry{r.Class, string(r.Data)})
		seqs = append(seqs, r.Seq)
	}
	return es, seqs
}

func ack(t testing.TB, q Queue, seqs ...uint64) {
	t.Helper()
	if err := q.Ack(seqs...); err != nil {
		t.Fatalf("Ack(%v): %v", seqs, err)
	}
}

func wantEntries(t testing.TB, what string, want, got []entry) {
	t.Helper()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("%s mismatch (-want +got):\n%s", what, diff)
	}
}

var (
	c0 = buffer.ClassCritical
	c1 = buffer.ClassEvent
	c2 = buffer.ClassTelemetry
)

func testPriorityOrder(t *testing.T, open Opener) {
	tests := []struct {
		name string
		in   []entry
		want []entry
	}{
		{"one class fifo", []entry{{c2, "a"}, {c2, "b"}, {c2, "c"}}, []entry{{c2, "a"}, {c2, "b"}, {c2, "c"}}},
		{
			"classes by priority then fifo",
			[]entry{{c2, "t1"}, {c1, "e1"}, {c0, "r1"}, {c2, "t2"}, {c0, "r2"}, {c1, "e2"}},
			[]entry{{c0, "r1"}, {c0, "r2"}, {c1, "e1"}, {c1, "e2"}, {c2, "t1"}, {c2, "t2"}},
		},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := openQ(t, open, options(t, NewClock(t0)))
			appendAll(t, q, tt.in...)
			got, _ := lease(t, q, 100, 0)
			wantEntries(t, "Lease", tt.want, got)
		})
	}
}

func testLiveFirst(t *testing.T, open Opener) {
	clk := NewClock(t0)
	o := options(t, clk)
	o.LiveWindow = time.Minute
	q := openQ(t, open, o)
	appendAll(t, q, entry{c2, "old1"}, entry{c2, "old2"}, entry{c2, "old3"})
	clk.Advance(time.Hour)
	appendAll(t, q, entry{c2, "new1"}, entry{c2, "new2"})
	got, _ := lease(t, q, 100, 0)
	// Live records newest first, then the backlog oldest first.
	wantEntries(t, "Lease", []entry{{c2, "new2"}, {c2, "new1"}, {c2, "old1"}, {c2, "old2"}, {c2, "old3"}}, got)
}

func testPartialAck(t *testing.T, open Opener) {
	q := openQ(t, open, options(t, NewClock(t0)))
	var in []entry
	for i := range 10 {
		in = append(in, entry{c1, fmt.Sprint(i)})
	}
	appendAll(t, q, in...)
	_, seqs := lease(t, q, 10, 0)
	ack(t, q, seqs[0], seqs[2], seqs[3], seqs[7], seqs[9])
	q.Release(seqs...)
	got, _ := lease(t, q, 10, 0)
	wantEntries(t, "Lease after partial ack", []entry{{c1, "1"}, {c1, "4"}, {c1, "5"}, {c1, "6"}, {c1, "8"}}, got)
	if s := q.Stats(); s.Records != 5 || s.Classes[c1].Records != 5 {
		t.Fatalf("Stats records = %d (event %d), want 5", s.Records, s.Classes[c1].Records)
	}
}

func testRelease(t *testing.T, open Opener) {
	q := openQ(t, open, options(t, NewClock(t0)))
	appendAll(t, q, entry{c2, "a"}, entry{c2, "b"}, entry{c2, "c"}, entry{c2, "d"})
	_, s1 := lease(t, q, 2, 0)
	_, s2 := lease(t, q, 2, 0)
	q.Release(s1[1], s2[0])
	got, _ := lease(t, q, 10, 0)
	wantEntries(t, "Lease after Release", []entry{{c2, "b"}, {c2, "c"}}, got)
	q.Release(12345678) // unknown: ignored
	if got, _ := lease(t, q, 10, 0); len(got) != 0 {
		t.Fatalf("Lease with everything leased = %v, want none", got)
	}
}

func testLeaseLimits(t *testing.T, open Opener) {
	q := openQ(t, open, options(t, NewClock(t0)))
	appendAll(t, q, entry{c2, "aaaaaaaaaa"}, entry{c2, "bbbbb"}, entry{c2, "ccccc"}, entry{c2, "d"})
	tests := []struct {
		name          string
		max, maxBytes int
		want          []entry
	}{
		{"first always even if too big", 10, 3, []entry{{c2, "aaaaaaaaaa"}}},
		{"byte limit", 10, 10, []entry{{c2, "bbbbb"}, {c2, "ccccc"}}},
		{"zero max", 0, 0, nil},
		{"count limit", 1, 0, []entry{{c2, "d"}}},
		{"nothing left", 5, 0, nil},
	}
	for _, tt := range tests {
		got, _ := lease(t, q, tt.max, tt.maxBytes)
		wantEntries(t, tt.name, tt.want, got)
	}
}

func testNoDoubleLease(t *testing.T, open Opener) {
	q := openQ(t, open, options(t, NewClock(t0)))
	for i := range 50 {
		appendAll(t, q, entry{buffer.Class(i % 3), fmt.Sprint(i)})
	}
	seen := map[uint64]bool{}
	for {
		_, seqs := lease(t, q, 7, 0)
		if len(seqs) == 0 {
			break
		}
		for _, s := range seqs {
			if seen[s] {
				t.Fatalf("seq %d leased twice", s)
			}
			seen[s] = true
		}
	}
	if len(seen) != 50 {
		t.Fatalf("leased %d records, want 50", len(seen))
	}
}

func testReady(t *testing.T, open Opener) {
	q := openQ(t, open, options(t, NewClock(t0)))
	select {
	case <-q.Ready():
		t.Fatal("Ready before any append")
	default:
	}
	appendAll(t, q, entry{c2, "a"}, entry{c2, "b"})
	select {
	case <-q.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("Ready not signalled after append")
	}
}

func testStats(t *testing.T, open Opener) {
	clk := NewClock(t0)
	q := openQ(t, open, options(t, clk))
	appendAll(t, q, entry{c0, "abc"}, entry{c2, "12345"}, entry{c2, "1"})
	clk.Advance(3 * time.Second)
	_, seqs := lease(t, q, 1, 0)
	s := q.Stats()
	want := [buffer.NumClasses]buffer.ClassStats{
		{Records: 1, Bytes: buffer.RecordOverhead + 3, OldestAge: 3 * time.Second},
		{},
		{Records: 2, Bytes: 2*buffer.RecordOverhead + 5 + 1, OldestAge: 3 * time.Second},
	}
	if diff := cmp.Diff(want, s.Classes); diff != "" {
		t.Fatalf("Stats.Classes mismatch (-want +got):\n%s", diff)
	}
	if s.Leased != 1 || s.Records != 3 || s.Appends != 3 {
		t.Fatalf("Stats = %+v, want 1 leased, 3 records, 3 appends", s)
	}
	ack(t, q, seqs...)
	if s := q.Stats(); s.Leased != 0 || s.Classes[c0].Records != 0 || s.Classes[c0].Bytes != 0 {
		t.Fatalf("Stats after ack = %+v", s)
	}
}

func testAckUnknown(t *testing.T, open Opener) {
	q := openQ(t, open, options(t, NewClock(t0)))
	seqs := appendAll(t, q, entry{c1, "a"}, entry{c1, "b"})
	ack(t, q, seqs[1]+1000, 0)
	ack(t, q, seqs[0]) // not leased: still acked
	ack(t, q, seqs[0]) // twice: no-op
	got, _ := lease(t, q, 10, 0)
	wantEntries(t, "Lease", []entry{{c1, "b"}}, got)
}

func testClosed(t *testing.T, open Opener) {
	q := open(t, options(t, NewClock(t0)))
	appendAll(t, q, entry{c1, "a"})
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := q.Append(context.Background(), c1, []byte("x")); !errors.Is(err, buffer.ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
	if _, err := q.Lease(1, 0); !errors.Is(err, buffer.ErrClosed) {
		t.Fatalf("Lease after Close = %v, want ErrClosed", err)
	}
	if err := q.Ack(1); !errors.Is(err, buffer.ErrClosed) {
		t.Fatalf("Ack after Close = %v, want ErrClosed", err)
	}
}

// testConcurrent runs producers and a consumer at once and checks that
// every appended record is delivered exactly once (no failures injected).
func testConcurrent(t *testing.T, open Opener) {
	o := options(t, NewClock(t0))
	o.Sync = buffer.SyncGroup
	o.GroupMaxWindow = 60 * time.Millisecond // adaptive, but short: 800 appends
	q := openQ(t, open, o)
	const producers, per = 4, 200
	var wg sync.WaitGroup
	appended := make(chan uint64, producers*per)
	for p := range producers {
		wg.Go(func() {
			for i := range per {
				s, err := q.Append(context.Background(), buffer.Class((p+i)%3), fmt.Appendf(nil, "%d-%d", p, i))
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				appended <- s
			}
		})
	}
	got := map[uint64]int{}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	deadline := time.After(60 * time.Second)
	for finished := false; ; {
		recs, err := q.Lease(16, 0)
		if err != nil {
			t.Fatalf("Lease: %v", err)
		}
		var seqs []uint64
		for _, r := range recs {
			got[r.Seq]++
			seqs = append(seqs, r.Seq)
		}
		if len(seqs) > 0 {
			ack(t, q, seqs...)
			continue
		}
		if finished {
			break
		}
		select {
		case <-done:
			finished = true
		case <-q.Ready():
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatal("timed out")
		}
	}
	close(appended)
	var want []uint64
	for s := range appended {
		want = append(want, s)
		if got[s] != 1 {
			t.Errorf("seq %d delivered %d times", s, got[s])
		}
	}
	if len(got) != len(want) {
		t.Errorf("delivered %d records, appended %d", len(got), len(want))
	}
	slices.Sort(want)
	if len(slices.Compact(want)) != producers*per {
		t.Errorf("duplicate seqs handed out")
	}
}

// waitFor polls cond for up to 30 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
