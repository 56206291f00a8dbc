package buffer_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/buffer"
)

// killEnv names the store directory when the test binary runs as the
// writer subprocess of TestKillDurability.
const killEnv = "TCU_BUFFER_KILL_WRITER"

// killWriter appends from 4 goroutines until killed, printing
// "<seq> <class> <payload>" after each Append returns.
func killWriter() {
	o := buffer.DefaultOptions(os.Getenv(killEnv))
	o.Sync = buffer.SyncPolicy(os.Getenv(killEnv + "_SYNC"))
	o.GroupMaxWindow = 60 * time.Millisecond // adaptive, but short: the rounds wait for output
	o.LiveWindow = -1
	o.MinFree = -1
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	idle := os.Getenv(killEnv+"_IDLE") != ""
	if idle {
		// The store closes after 3 ms unused and the writers pause up
		// to 10 ms: kills land in closes and reopens.
		o.IdleClose = 3 * time.Millisecond
		buffer.FixIdleClose(&o)
	}
	q, err := buffer.Open(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	if idle {
		go func() { // how often the store reopened (idleReopens)
			for range time.Tick(20 * time.Millisecond) {
				mu.Lock()
				fmt.Fprintf(os.Stdout, "#opens=%d\n", q.Stats().StoreOpens)
				mu.Unlock()
			}
		}()
	}
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				c := buffer.Class((g + i) % 3)
				p := fmt.Sprintf("g%d-%d-%s", g, i, strings.Repeat("x", i%300))
				s, err := q.Append(context.Background(), c, []byte(p))
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "%d %d %s\n", s, c, p) // unbuffered: one write per line
				mu.Unlock()
				if idle {
					time.Sleep(time.Duration(rand.IntN(10_000)) * time.Microsecond)
				}
			}
		})
	}
	wg.Wait()
	os.Exit(0)
}

// idleReopens is the most reopens after an idle close a writer reported.
var idleReopens atomic.Uint64

type killRec struct {
	class buffer.Class
	data  string
}

// TestKillDurability SIGKILLs a writer subprocess at random points; after
// each kill the store must hold every record whose Append returned (and
// was not acked since), exactly once, with its data, in seq order within
// its class, and new seqs must be above all earlier ones.
func TestKillDurability(t *testing.T) {
	t.Parallel()
	rounds := 50
	if testing.Short() {
		rounds = 4
	}
	for _, mode := range []string{"group", "always", "none", "group-idle"} {
		pol, idle := buffer.SyncPolicy(strings.TrimSuffix(mode, "-idle")), strings.HasSuffix(mode, "-idle")
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir() + "/queue"
			want := map[uint64]killRec{} // returned and not acked
			var maxSeq uint64
			for round := range rounds {
				got := runWriter(t, dir, pol, idle, 20+rand.IntN(400))
				for s, r := range got {
					if s <= maxSeq {
						t.Fatalf("round %d: seq %d reused or below earlier max %d", round, s, maxSeq)
					}
					want[s] = r
				}
				for s := range got {
					maxSeq = max(maxSeq, s)
				}
				checkAfterKill(t, dir, want)
			}
			if idle && idleReopens.Load() == 0 {
				t.Fatal("the idle writers' store never closed and reopened: the kills did not test it")
			}
		})
	}
}

// runWriter starts the writer, reads returned seqs until n were seen, kills
// it and returns what it reported.
//
// Badger releases its directory lock by closing the lock file without
// LOCK_UN, so a child that another parallel test forked while the store was
// open keeps the lock until that child calls exec. A writer that finds the
// directory locked before appending anything is therefore started again.
func runWriter(t *testing.T, dir string, pol buffer.SyncPolicy, idle bool, n int) map[uint64]killRec {
	t.Helper()
	for try := 1; ; try++ {
		got, stderr := startWriter(t, dir, pol, idle, n)
		if len(got) >= n {
			return got
		}
		if try < 5 && len(got) == 0 && (strings.Contains(stderr, "Cannot acquire directory lock") || strings.Contains(stderr, "in use by another process")) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		t.Fatalf("writer died after %d appends: %s", len(got), stderr)
	}
}

// startWriter runs one writer until it reported n appends (then kills it)
// or exited, and returns what it reported and its stderr.
func startWriter(t *testing.T, dir string, pol buffer.SyncPolicy, idle bool, n int) (map[uint64]killRec, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), killEnv+"="+dir, killEnv+"_SYNC="+string(pol))
	if idle {
		cmd.Env = append(cmd.Env, killEnv+"_IDLE=1")
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	got := map[uint64]killRec{}
	sc := bufio.NewScanner(out)
	timeout := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
	defer timeout.Stop()
	for sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "#opens="); ok {
			if v, err := strconv.ParseUint(n, 10, 64); err == nil {
				idleReopens.Store(max(idleReopens.Load(), v))
			}
			continue
		}
		f := strings.SplitN(sc.Text(), " ", 3)
		if len(f) != 3 {
			continue // torn by the kill
		}
		s, _ := strconv.ParseUint(f[0], 10, 64)
		c, _ := strconv.Atoi(f[1])
		got[s] = killRec{buffer.Class(c), f[2]}
		if len(got) == n {
			_ = cmd.Process.Kill()
		}
	}
	_ = cmd.Wait()
	return got, stderr.String()
}

// checkAfterKill reopens the store, checks it against want, then acks a
// random half of the records (removing them from want) and closes.
func checkAfterKill(t *testing.T, dir string, want map[uint64]killRec) {
	t.Helper()
	o := testOptions(t)
	o.Dir = dir
	q, err := buffer.Open(o)
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer q.Close()
	if d := q.Stats().Degraded; d != "" {
		t.Fatalf("degraded after kill: %s", d)
	}
	recs := leaseAll(t, q)
	seen := map[uint64]bool{}
	var lastInClass [buffer.NumClasses]uint64
	for _, r := range recs {
		if seen[r.Seq] {
			t.Fatalf("seq %d stored twice", r.Seq)
		}
		seen[r.Seq] = true
		if r.Seq <= lastInClass[r.Class] {
			t.Fatalf("class %v out of order: %d after %d", r.Class, r.Seq, lastInClass[r.Class])
		}
		lastInClass[r.Class] = r.Seq
		if w, ok := want[r.Seq]; ok && (w.class != r.Class || w.data != string(r.Data)) {
			t.Fatalf("seq %d = %v %q, want %v %q", r.Seq, r.Class, r.Data, w.class, w.data)
		}
	}
	var ack []uint64
	for s := range want {
		if !seen[s] {
			t.Fatalf("seq %d returned by Append but missing after kill (%d of %d present)", s, len(seen), len(want))
		}
		if rand.IntN(2) == 0 {
			ack = append(ack, s)
			delete(want, s)
		}
	}
	// Records the writer stored but had not reported yet stay unacked
	// and unchecked; release everything else.
	if err := q.Ack(ack...); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if _, ok := want[r.Seq]; !ok && !contains(ack, r.Seq) {
			if err := q.Ack(r.Seq); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func contains(s []uint64, x uint64) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}
