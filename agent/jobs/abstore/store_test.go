package abstore_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/jobs/abstore"
	"github.com/tcu-agent/tcu-agent/agent/jobs/bundle"
)

func entries(content string) []bundle.Entry {
	return []bundle.Entry{{Name: "dbc", Dir: true}, {Name: "dbc/v.dbc", Data: []byte("x")}, {Name: bundle.ConfigName, Data: []byte(content)}}
}

func read(t *testing.T, s *abstore.Store, slot string) string {
	t.Helper()
	b, err := os.ReadFile(s.ConfigPath(slot))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The last-known-good slot is never written: bundles alternate between
// the slots, a trial blocks a second one, and a crash loop rolls back.
func TestStoreLifecycle(t *testing.T) {
	t.Parallel()
	s, err := abstore.Open(filepath.Join(t.TempDir(), "config"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	st, err := s.Boot(3)
	if err != nil || st.Good != "" || st.Trial != nil {
		t.Fatalf("fresh boot %+v %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "state.json")); !os.IsNotExist(err) {
		t.Error("a boot without a trial wrote the state file")
	}
	for i, want := range []string{"a", "b", "a"} {
		slot, err := s.Stage(entries("v" + want))
		if err != nil || slot != want {
			t.Fatalf("stage %d: slot %q %v, want %q", i, slot, err, want)
		}
		if err := s.BeginTrial(slot, abstore.Meta{JobID: "j", Version: want}, now); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stage(entries("x")); !errors.Is(err, abstore.ErrBusy) {
			t.Errorf("stage during a trial: %v, want ErrBusy", err)
		}
		if st, err = s.Commit(); err != nil || st.Good != want || st.Result.Status != "SUCCEEDED" {
			t.Fatalf("commit %+v %v", st, err)
		}
	}
	// Good is "a" now; a crash-looping trial in "b" never touches it.
	good := read(t, s, "a")
	slot, _ := s.Stage(entries("bad"))
	if err := s.BeginTrial(slot, abstore.Meta{JobID: "j2"}, now); err != nil {
		t.Fatal(err)
	}
	for boot := 1; boot <= 3; boot++ {
		if st, err = s.Boot(3); err != nil || st.Trial == nil || st.Trial.Boots != boot {
			t.Fatalf("boot %d: %+v %v", boot, st, err)
		}
	}
	st, err = s.Boot(3)
	if err != nil || st.Trial != nil || st.Good != "a" || st.Result == nil || st.Result.Reason != bundle.ReasonCrashLoop || st.Result.JobID != "j2" {
		t.Fatalf("4th boot %+v %+v %v, want the rollback to a", st, st.Result, err)
	}
	if read(t, s, "a") != good {
		t.Error("the last-known-good slot changed")
	}
	if err := s.ClearResult("j2"); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Load(); st.Result != nil {
		t.Errorf("result %+v not cleared", st.Result)
	}
}

func TestStoreCorrupt(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "config")
	s, _ := abstore.Open(dir)
	for _, body := range []string{"{", `{"good":"c"}`, `{"good":"a","trial":{"slot":"a"}}`} {
		if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Boot(3); !errors.Is(err, abstore.ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", body, err)
		}
	}
}
