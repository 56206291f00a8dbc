package ledger_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tcu-agent/tcu-agent/agent/command/ledger"
)

var t0 = time.UnixMilli(1_790_000_000_000)

func open(t *testing.T, dir string) *ledger.Ledger {
	t.Helper()
	l, err := ledger.Open(dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestLifecycleSurvivesReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := open(t, dir)
	exp := t0.Add(time.Hour)
	must(t, l.Begin("a", "door.lock", "cmd/tcu/x/response/a", exp, t0))
	must(t, l.Begin("b", "door.unlock", "cmd/tcu/x/response/b", exp, t0))
	must(t, l.Finish("b", t0, []byte(`{"status":"SUCCEEDED"}`)))
	must(t, l.Record("c", "", "cmd/tcu/x/response/c", exp, t0, []byte(`{"status":"REJECTED"}`)))
	must(t, l.Responded("c", t0))
	if err := l.Begin("a", "door.lock", "", exp, t0); !errors.Is(err, ledger.ErrExists) {
		t.Errorf("second Begin = %v, want ErrExists", err)
	}
	if err := l.Finish("zz", t0, nil); !errors.Is(err, ledger.ErrUnknown) {
		t.Errorf("Finish unknown = %v, want ErrUnknown", err)
	}
	must(t, l.Close())

	l2 := open(t, dir)
	want := map[string]ledger.State{"a": ledger.Executing, "b": ledger.Done, "c": ledger.Responded}
	for id, st := range want {
		e, ok := l2.Get(id)
		if !ok || e.State != st {
			t.Errorf("Get(%s) = %+v, %v; want state %s", id, e, ok, st)
		}
	}
	if e, _ := l2.Get("b"); string(e.Result) != `{"status":"SUCCEEDED"}` || e.Topic != "cmd/tcu/x/response/b" {
		t.Errorf("entry b = %+v", e)
	}
	var ids []string
	for _, e := range l2.Unfinished() {
		ids = append(ids, e.ID)
	}
	if diff := cmp.Diff([]string{"a", "b"}, sortStrings(ids)); diff != "" {
		t.Errorf("Unfinished() ids (-want +got):\n%s", diff)
	}
}

// TestTornTail: a partial or corrupt last line (crash mid-write) is dropped
// and the file truncated; everything before it is kept and appends go on.
func TestTornTail(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		tail string
	}{
		{name: "partial line", tail: `1234abcd {"id":"x","sta`},
		{name: "bad checksum", tail: `00000000 {"id":"x","state":"executing","expires":1,"updated":1}` + "\n"},
		{name: "garbage", tail: "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			l := open(t, dir)
			must(t, l.Begin("a", "door.lock", "", t0, t0))
			must(t, l.Close())
			path := filepath.Join(dir, "ledger.log")
			good, _ := os.ReadFile(path)
			f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			fmt.Fprint(f, tt.tail)
			f.Close()

			l2 := open(t, dir)
			if _, ok := l2.Get("x"); ok || l2.Len() != 1 {
				t.Fatalf("corrupt tail was loaded: len %d", l2.Len())
			}
			if b, _ := os.ReadFile(path); string(b) != string(good) {
				t.Errorf("file not truncated to the good prefix")
			}
			must(t, l2.Finish("a", t0, []byte(`{}`)))
			must(t, l2.Close())
			if e, _ := open(t, dir).Get("a"); e.State != ledger.Done {
				t.Errorf("append after truncation lost: %+v", e)
			}
		})
	}
}

// TestPruneCompacts: only responded, expired entries go; the file shrinks
// and the survivors reload.
func TestPruneCompacts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := open(t, dir)
	for i := range 100 {
		id := fmt.Sprintf("old-%d", i)
		must(t, l.Record(id, "door.lock", "", t0, t0, []byte(`{}`)))
		must(t, l.Responded(id, t0))
	}
	must(t, l.Begin("running", "door.lock", "", t0, t0))
	must(t, l.Record("unsent", "door.lock", "", t0, t0, []byte(`{}`)))
	must(t, l.Record("fresh", "door.lock", "", t0.Add(time.Hour), t0, []byte(`{}`)))
	must(t, l.Responded("fresh", t0))
	path := filepath.Join(dir, "ledger.log")
	before, _ := os.Stat(path)

	n, err := l.Prune(t0.Add(time.Minute))
	if err != nil || n != 100 {
		t.Fatalf("Prune() = %d, %v; want 100", n, err)
	}
	after, _ := os.Stat(path)
	if after.Size() >= before.Size()/10 {
		t.Errorf("file %d → %d bytes, not compacted", before.Size(), after.Size())
	}
	must(t, l.Finish("running", t0, []byte(`{"ok":1}`))) // appends go to the new file
	must(t, l.Close())
	l2 := open(t, dir)
	if l2.Len() != 3 {
		t.Errorf("reloaded %d entries, want 3", l2.Len())
	}
	if e, _ := l2.Get("running"); e.State != ledger.Done {
		t.Errorf("running = %+v, want done", e)
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	l := open(t, t.TempDir())
	must(t, l.Close())
	if err := l.Begin("a", "", "", t0, t0); !errors.Is(err, ledger.ErrClosed) {
		t.Errorf("Begin after Close = %v, want ErrClosed", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func sortStrings(s []string) []string {
	out := append([]string(nil), s...)
	slices.Sort(out)
	return out
}

// TestDamagedMiddleLine: a damaged line that is not the last is skipped and
// counted; the good lines after it survive.
func TestDamagedMiddleLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := open(t, dir)
	for _, id := range []string{"a", "b", "c"} {
		must(t, l.Begin(id, "door.lock", "", t0, t0))
	}
	must(t, l.Close())
	path := filepath.Join(dir, "ledger.log")
	b, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(b), "\n")
	lines[1] = strings.Replace(lines[1], `"b"`, `"x"`, 1) // checksum no longer matches
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	l2 := open(t, dir)
	if l2.Corrupt() != 1 || l2.Len() != 2 {
		t.Fatalf("Corrupt() = %d, Len() = %d; want 1, 2", l2.Corrupt(), l2.Len())
	}
	if _, ok := l2.Get("c"); !ok {
		t.Error("entry after the damaged line lost")
	}
	if l2.DamagedAt().IsZero() {
		t.Error("DamagedAt is zero after damage")
	}
	q, _ := filepath.Glob(filepath.Join(dir, "ledger.log.damaged-*"))
	if len(q) != 1 {
		t.Fatalf("quarantined copies: %v, want one", q)
	}
	if kept, _ := os.ReadFile(q[0]); !strings.Contains(string(kept), `"x"`) {
		t.Errorf("quarantined copy does not hold the damaged file")
	}
	must(t, l2.Finish("c", t0, []byte(`{}`)))
	must(t, l2.Close())
	l3 := open(t, dir)
	if e, _ := l3.Get("c"); e.State != ledger.Done {
		t.Errorf("c = %+v after reopen, want done", e)
	}
	// The damage is counted once (the file was rewritten) but remembered.
	if l3.Corrupt() != 0 || !l3.DamagedAt().Equal(l2.DamagedAt()) {
		t.Errorf("after reopen: Corrupt() = %d, DamagedAt = %v; want 0, %v", l3.Corrupt(), l3.DamagedAt(), l2.DamagedAt())
	}
}

// TestUnreadableIsNotDamage: a ledger that cannot be read (here: a
// directory where the file should be) fails Open and is left alone; it is
// not quarantined as damaged.
func TestUnreadableIsNotDamage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "ledger.log"), 0o700); err != nil {
		t.Fatal(err)
	}
	if l, err := ledger.Open(dir); err == nil {
		_ = l.Close()
		t.Fatal("Open succeeded on an unreadable ledger")
	}
	if q, _ := filepath.Glob(filepath.Join(dir, "ledger.log.damaged-*")); len(q) != 0 {
		t.Errorf("unreadable ledger quarantined: %v", q)
	}
	if fi, err := os.Stat(filepath.Join(dir, "ledger.log")); err != nil || !fi.IsDir() {
		t.Errorf("unreadable ledger touched: %v", err)
	}
}

// TestDue: Due names the first time Prune drops an entry (the earliest
// expiry among responded entries, plus 1 ms) and the oldest result still
// to be handed over; nothing for entries in flight or an empty ledger.
func TestDue(t *testing.T) {
	t.Parallel()
	l := open(t, t.TempDir())
	zero := time.Time{}
	steps := []struct {
		name            string
		do              func()
		prune, doneSinc time.Time
	}{
		{"empty", func() {}, zero, zero},
		{"received and executing: nothing due", func() {
			must(t, l.Receive("r", "door.lock", "t", t0.Add(time.Hour), t0))
			must(t, l.Begin("x", "door.lock", "t", t0.Add(2*time.Hour), t0))
		}, zero, zero},
		{"a result to hand over", func() {
			must(t, l.Finish("x", t0.Add(time.Second), []byte(`{}`)))
		}, zero, t0.Add(time.Second)},
		{"an older refusal to hand over", func() {
			must(t, l.Record("y", "door.lock", "t", t0.Add(3*time.Hour), t0, []byte(`{}`)))
		}, zero, t0},
		{"handed over: prunable after its expiry", func() {
			must(t, l.Responded("x", t0.Add(2*time.Second)))
		}, t0.Add(2*time.Hour + time.Millisecond), t0},
		{"the earliest expiry counts", func() {
			must(t, l.Responded("y", t0.Add(2*time.Second)))
			must(t, l.Record("z", "door.lock", "t", t0.Add(30*time.Minute), t0, []byte(`{}`)))
			must(t, l.Responded("z", t0.Add(2*time.Second)))
		}, t0.Add(30*time.Minute + time.Millisecond), zero},
		{"pruned at pruneAt, not before", func() {
			if n, err := l.Prune(t0.Add(30 * time.Minute)); err != nil || n != 0 {
				t.Fatalf("Prune at the expiry = %d, %v; want 0", n, err)
			}
			if n, err := l.Prune(t0.Add(30*time.Minute + time.Millisecond)); err != nil || n != 1 {
				t.Fatalf("Prune at pruneAt = %d, %v; want 1", n, err)
			}
		}, t0.Add(2*time.Hour + time.Millisecond), zero},
	}
	for _, st := range steps {
		st.do()
		prune, done := l.Due()
		if !prune.Equal(st.prune) || !done.Equal(st.doneSinc) {
			t.Errorf("%s: Due() = %v, %v; want %v, %v", st.name, prune, done, st.prune, st.doneSinc)
		}
	}
}
