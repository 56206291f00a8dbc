//go:build idlecost

package buffer_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/buffer"
)

// TestIdleCost measures what an open, idle store costs the process: it
// opens a store with the default options, appends a few records, lets the
// first GC pass and flushes settle, then counts the process's voluntary
// and involuntary context switches (summed over /proc/self/task/*/status)
// over IDLE_SECONDS (default 60). The store stays open unless IDLE_CLOSE
// (a duration shorter than the 2 s settling time) closes it for
// idleness. Not part of `make test`:
//
//	go test -tags idlecost -run TestIdleCost -v ./buffer/
//	IDLE_CLOSE=1s go test -tags idlecost -run TestIdleCost -v ./buffer/
func TestIdleCost(t *testing.T) {
	idle := 60 * time.Second
	if s := os.Getenv("IDLE_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("IDLE_SECONDS: %v", err)
		}
		idle = time.Duration(n) * time.Second
	}
	o := buffer.DefaultOptions(t.TempDir() + "/queue")
	o.IdleClose = -1 // an open store: what idle close saves
	if s := os.Getenv("IDLE_CLOSE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("IDLE_CLOSE: %v", err)
		}
		o.IdleClose = d
	}
	q := mustOpen(t, o)
	for i := range 5 {
		mustAppend(t, q, buffer.ClassTelemetry, strings.Repeat("x", 200+i))
	}
	time.Sleep(2 * time.Second) // the appends' commit, sync and wake-ups settle
	before, threads := ctxSwitches(t)
	start := time.Now()
	time.Sleep(idle)
	after, threadsAfter := ctxSwitches(t)
	secs := time.Since(start).Seconds()
	t.Logf("idle %.0f s: %d context switches (%.2f/s), threads %d -> %d, store closed %v",
		secs, after-before, float64(after-before)/secs, threads, threadsAfter, q.Stats().StoreClosed)
}

// ctxSwitches sums voluntary and nonvoluntary context switches over the
// process's threads.
func ctxSwitches(t *testing.T) (n int64, threads int) {
	t.Helper()
	dirs, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range dirs {
		b, err := os.ReadFile(f) //nolint:gosec // /proc
		if err != nil {
			continue // the thread exited
		}
		threads++
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				x, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err == nil {
					n += x
				}
			}
		}
	}
	return n, threads
}
