package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent"
	"github.com/tcu-agent/tcu-agent/agent/jobs/abstore"
	"github.com/tcu-agent/tcu-agent/agent/jobs/bundle"
)

// TestActiveConfig: the startup hook runs the bundle on trial, rolls back
// one that does not load, resets a damaged store, and ignores the store
// when [jobs] is off in the --config file.
func TestActiveConfig(t *testing.T) {
	t.Parallel()
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, tc := range []struct {
		name     string
		jobs     string // [jobs] body of the --config file
		bundle   string // the trial's tcu-agent.toml ("" = no trial)
		state    string // raw state.json to write instead
		wantFile string // "base" or "slot"
		wantNote string
	}{
		{name: "trial runs", jobs: "public_keys = [\"" + key + "\"]", bundle: "interval = \"2s\"", wantFile: "slot"},
		{name: "trial that does not load", jobs: "public_keys = [\"" + key + "\"]", bundle: "interval = \"1ms\"", wantFile: "base", wantNote: "does not load, rolled back"},
		{name: "damaged state", jobs: "public_keys = [\"" + key + "\"]", state: "{", wantFile: "base", wantNote: "damaged, reset"},
		{name: "jobs off", jobs: "enabled = false", bundle: "interval = \"2s\"", wantFile: "base"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			state := filepath.Join(dir, "state")
			conf := func(tel string) string {
				return fmt.Sprintf("version = 1\n[agent]\nthing_name = \"T\"\nstate_dir = %q\n[mqtt]\nbroker = \"tcp://127.0.0.1:1\"\nallow_plaintext = true\n[telemetry]\n%s\n[jobs]\n%s\n", state, tel, tc.jobs)
			}
			base := filepath.Join(dir, "tcu-agent.toml")
			if err := os.WriteFile(base, []byte(conf("")), 0o600); err != nil {
				t.Fatal(err)
			}
			store, err := abstore.Open(agent.ConfigStoreDir(state))
			if err != nil {
				t.Fatal(err)
			}
			if tc.bundle != "" {
				slot, err := store.Stage([]bundle.Entry{{Name: bundle.ConfigName, Data: []byte(conf(tc.bundle))}})
				if err != nil {
					t.Fatal(err)
				}
				if err := store.BeginTrial(slot, abstore.Meta{JobID: "j"}, time.Now()); err != nil {
					t.Fatal(err)
				}
			}
			if tc.state != "" {
				if err := os.WriteFile(filepath.Join(store.Dir(), "state.json"), []byte(tc.state), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cf := &configFlags{path: base}
			cfg, sec, err := cf.load()
			if err != nil {
				t.Fatal(err)
			}
			got, _, notes := activeConfig(cf, cfg, sec)
			onSlot := got.File != base
			if onSlot != (tc.wantFile == "slot") {
				t.Errorf("runs %s, want %s", got.File, tc.wantFile)
			}
			if !strings.Contains(strings.Join(notes, "\n"), tc.wantNote) {
				t.Errorf("notes %q, want %q", notes, tc.wantNote)
			}
			st, err := store.Load()
			if err != nil {
				t.Fatalf("store after the hook: %v", err)
			}
			if tc.name == "trial that does not load" && (st.Trial != nil || st.Result == nil || st.Result.Reason != bundle.ReasonInvalidConfig) {
				t.Errorf("state %+v result %+v, want the trial rolled back invalid_config", st, st.Result)
			}
		})
	}
}
