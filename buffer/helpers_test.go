package buffer_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/buffer"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// testOptions returns on-disk options in a fresh temp dir.
func testOptions(t testing.TB) buffer.Options {
	o := buffer.DefaultOptions(t.TempDir() + "/queue")
	o.LiveWindow = -1
	o.MinFree = -1
	// A fixed window: these tests append one record at a time, and the
	// adaptive window (up to 500 ms) would only slow them down. Its own
	// tests are in commit_test.go; the kill test and the conformance
	// suite's concurrent test run it with a short maximum.
	o.GroupMaxWindow = o.GroupWindow
	return o
}

func mustOpen(t testing.TB, o buffer.Options) *buffer.Queue {
	t.Helper()
	q, err := buffer.Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

func mustAppend(t testing.TB, q *buffer.Queue, c buffer.Class, data string) uint64 {
	t.Helper()
	s, err := q.Append(context.Background(), c, []byte(data))
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return s
}

// leaseAll leases everything and returns it.
func leaseAll(t testing.TB, q *buffer.Queue) []buffer.Record {
	t.Helper()
	var all []buffer.Record
	for {
		recs, err := q.Lease(1000, 0)
		if err != nil {
			t.Fatalf("Lease: %v", err)
		}
		if len(recs) == 0 {
			return all
		}
		all = append(all, recs...)
	}
}

// openAsEnv names the store directory when the test binary runs as the
// unprivileged opener of TestOpenStorageFaults.
const openAsEnv = "TCU_BUFFER_OPEN_AS"

// openAs opens the queue in $TCU_BUFFER_OPEN_AS and prints the outcome:
// "ok <records>" or "err storage=<bool> <message>".
func openAs() {
	o := buffer.DefaultOptions(os.Getenv(openAsEnv))
	q, err := buffer.Open(o)
	if err != nil {
		fmt.Printf("err storage=%v %v\n", errors.Is(err, buffer.ErrStorage), err)
		os.Exit(0)
	}
	fmt.Printf("ok %d\n", q.Stats().Records)
	_ = q.Close()
	os.Exit(0)
}
