package ledger

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/internal/fsutil"
)

var errInjected = errors.New("injected fault")

// faultOps fails the n-th file system call (counting from 1) of any kind;
// a failing write writes half its bytes first (a short write).
type faultOps struct {
	n, calls int
	failed   string
}

func (f *faultOps) hit(what string) bool {
	f.calls++
	if f.calls == f.n {
		f.failed = what
		return true
	}
	return false
}

func (f *faultOps) ops() ops {
	return ops{
		write: func(file *os.File, b []byte) (int, error) {
			if f.hit("write") {
				n, _ := file.Write(b[:len(b)/2])
				return n, errInjected
			}
			return file.Write(b)
		},
		sync: func(file *os.File) error {
			if f.hit("sync") {
				return errInjected
			}
			return file.Sync()
		},
		rename: func(from, to string) error {
			if f.hit("rename") {
				return errInjected
			}
			return os.Rename(from, to)
		},
		syncDir: func(dir string) error {
			if f.hit("syncdir") {
				return errInjected
			}
			return fsutil.SyncDir(dir)
		},
	}
}

var rank = map[State]int{Received: 1, Executing: 2, Done: 3, Responded: 4}

// TestFaultAtEveryStep fails each file system call of a workload in turn
// (appends, syncs, a compaction's write, fsync, rename and directory fsync)
// and checks the ledger's promise after reopening with a healthy file
// system: every write reported durable is there (at least in that state),
// and no damaged line was left behind. The compaction case is issue 13's
// "dir fsync fails after rename → later entries go to an unlinked file".
func TestFaultAtEveryStep(t *testing.T) {
	t.Parallel()
	t0 := time.UnixMilli(1_790_000_000_000)
	exp := t0.Add(time.Hour)
	const steps = 400
	var failedAt []string
	for n := 1; n <= steps; n++ {
		dir := t.TempDir()
		fo := &faultOps{n: n}
		promised := map[string]State{}
		func() {
			l, err := open(dir, fo.ops(), func() time.Time { return t0 })
			if err != nil {
				return
			}
			defer func() { _ = l.Close() }()
			var pending []string // written, durable after the next good Sync
			var pendingSt []State
			sync := func() {
				if l.Sync() == nil {
					for i, id := range pending {
						promised[id] = pendingSt[i]
					}
				}
				pending, pendingSt = nil, nil
			}
			for i := range 80 { // prunable: responded and expired at Prune time
				id := fmt.Sprintf("old-%d", i)
				if l.Record(id, "door.lock", "t", t0, t0, []byte(`{}`)) == nil {
					pending, pendingSt = append(pending, id), append(pendingSt, Done)
				}
				_ = l.Responded(id, t0)
			}
			sync()
			for i := range 80 { // pruned below by design
				delete(promised, fmt.Sprintf("old-%d", i))
			}
			if l.Begin("live-1", "door.lock", "t", exp, t0) == nil {
				promised["live-1"] = Executing
			}
			if l.Receive("recv-1", "door.lock", "t", exp, t0) == nil {
				pending, pendingSt = append(pending, "recv-1"), append(pendingSt, Received)
			}
			sync()
			_, _ = l.Prune(t0.Add(2 * time.Hour)) // compacts: 82+ lines, 2 live
			if l.Begin("after-1", "door.lock", "t", exp, t0) == nil {
				promised["after-1"] = Executing
				if l.Finish("after-1", t0, []byte(`{"s":1}`)) == nil {
					promised["after-1"] = Done
				}
			}
			if l.Begin("recv-1", "door.lock", "t", exp, t0) == nil {
				promised["recv-1"] = Executing
			}
			if l.Record("after-2", "door.lock", "t", exp, t0, []byte(`{}`)) == nil {
				pending, pendingSt = append(pending, "after-2"), append(pendingSt, Done)
			}
			sync()
		}()
		if fo.failed == "" {
			if n == 1 {
				t.Fatal("no file system call made")
			}
			break // every call of the workload has been failed once
		}
		failedAt = append(failedAt, fo.failed)
		l, err := Open(dir)
		if err != nil {
			t.Fatalf("fault %d (%s): reopen: %v", n, fo.failed, err)
		}
		if c := l.Corrupt(); c != 0 {
			t.Errorf("fault %d (%s): %d damaged lines after reopen", n, fo.failed, c)
		}
		for id, st := range promised {
			e, ok := l.Get(id)
			if !ok || rank[e.State] < rank[st] {
				t.Errorf("fault %d (%s): %s promised %s, found %+v (present %v)", n, fo.failed, id, st, e, ok)
			}
		}
		_ = l.Close()
		if n == steps {
			t.Fatalf("workload makes more than %d calls", steps)
		}
	}
	kinds := map[string]int{}
	for _, k := range failedAt {
		kinds[k]++
	}
	for _, k := range []string{"write", "sync", "rename", "syncdir"} {
		if kinds[k] == 0 {
			t.Errorf("no %s fault injected (%v)", k, kinds)
		}
	}
	t.Logf("faults injected: %v", kinds)
}
