package buffertest

import "testing"

// RunPersistent runs the tests that reopen a store; open must keep data
// in o.Dir across Close.
func RunPersistent(t *testing.T, open Opener) {
	t.Run("Reopen", func(t *testing.T) {
		t.Parallel()
		testReopen(t, open)
	})
}

func testReopen(t *testing.T, open Opener) {
	o := options(t, NewClock(t0))
	q := open(t, o)
	seqs := appendAll(t, q, entry{c2, "t1"}, entry{c1, "e1"}, entry{c2, "t2"}, entry{c0, "r1"})
	_, leased := lease(t, q, 2, 0) // r1, e1
	ack(t, q, leased[0])           // r1 acked; e1 leased but not acked
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	q = openQ(t, open, o)
	got, _ := lease(t, q, 10, 0)
	wantEntries(t, "Lease after reopen", []entry{{c1, "e1"}, {c2, "t1"}, {c2, "t2"}}, got)
	s := appendAll(t, q, entry{c2, "t3"})
	if s[0] <= seqs[len(seqs)-1] {
		t.Fatalf("seq after reopen %d <= %d", s[0], seqs[len(seqs)-1])
	}
}
