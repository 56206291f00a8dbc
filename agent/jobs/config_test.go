package jobs_test

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
	"github.com/tcu-agent/tcu-agent/agent/config"
	"github.com/tcu-agent/tcu-agent/agent/jobs"
)

// TestSampleConfigDefaults: every [jobs] key is documented in
// configs/tcu-agent.toml and its commented-out default equals DefaultConfig.
func TestSampleConfigDefaults(t *testing.T) {
	t.Parallel()
	text, err := os.ReadFile("../../configs/tcu-agent.toml")
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.Index(text, []byte("\n[jobs]\n"))
	if start < 0 {
		t.Fatal("no [jobs] section")
	}
	section := text[start+1:]
	if end := bytes.Index(section[1:], []byte("\n[")); end >= 0 {
		section = section[:end+1]
	}
	var lines []string
	for _, m := range regexp.MustCompile(`(?m)^# ([a-z_]+ = .*)$`).FindAllSubmatch(section, -1) {
		lines = append(lines, string(m[1]))
	}
	var doc map[string]any
	if err := toml.Unmarshal([]byte(strings.Join(lines, "\n")), &doc); err != nil {
		t.Fatalf("commented defaults: %v", err)
	}
	defText, err := toml.Marshal(jobs.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	var defaults map[string]any
	if err := toml.Unmarshal(defText, &defaults); err != nil {
		t.Fatal(err)
	}
	for k, v := range doc {
		if fmt.Sprint(defaults[k]) != fmt.Sprint(v) {
			t.Errorf("configs/tcu-agent.toml: # %s = %v, DefaultConfig has %v", k, v, defaults[k])
		}
	}
	if !bytes.Contains(section, []byte("\n#   enabled = ")) {
		t.Error("jobs.enabled is not documented")
	}
	for k := range defaults {
		if _, ok := doc[k]; !ok {
			t.Errorf("jobs.%s is not documented in configs/tcu-agent.toml", k)
		}
	}
	if len(doc) != 5 {
		t.Errorf("documented %d keys with defaults, want 5: %v", len(doc), doc)
	}
}

func TestConfigStrict(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ body, want string }{
		{"[jobs]\nproving_time = \"30s\"\npublic_keys = [\"k\"]\n", ""},
		{"[jobs]\nproving_tme = \"30s\"\n", "x.toml:3"},
		{"[jobs]\nproving_time = \"0s\"\n", "x.toml:3: [jobs] jobs.proving_time"},
		{"[jobs]\nmax_bundle_size = \"1GiB\"\n", "x.toml:3: [jobs] jobs.max_bundle_size"},
		{"[jobs]\ndownload_timeout = \"-1s\"\n", "x.toml:3"},
	} {
		jc := jobs.DefaultConfig()
		_, err := config.Parse("x.toml", []byte("version = 1\n"+tc.body), config.Extensions{"jobs": &jc})
		if tc.want == "" {
			if err != nil || !jc.On() {
				t.Errorf("%q: %v (on %v)", tc.body, err, jc.On())
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.body, err, tc.want)
		}
	}
	if jobs.DefaultConfig().On() {
		t.Error("on without keys by default")
	}
}
