package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/tcu-agent/tcu-agent/agent"
	"github.com/tcu-agent/tcu-agent/agent/config"
)

func TestCheckConfigShippedFiles(t *testing.T) {
	t.Parallel()
	for _, f := range []string{"../../configs/tcu-agent.toml", "../../configs/demo.toml"} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), []string{"check-config", f}, &out, &errb); code != 0 {
			t.Errorf("check-config %s: exit %d\n%s", f, code, errb.String())
		}
	}
}

func TestCheckConfigMisspeltKey(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("../../configs/tcu-agent.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dbc, err := os.ReadFile("../../configs/vehicle.dbc")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vehicle.dbc"), dbc, 0o644); err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(src), "interface = \"can0\"", "interfase = \"can0\"", 1)
	line := 1 + strings.Count(bad[:strings.Index(bad, "interfase")], "\n")
	path := filepath.Join(dir, "tcu-agent.toml")
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"check-config", path}, &out, &errb)
	if code != 78 {
		t.Errorf("exit code = %d, want 78", code)
	}
	want := path + ":" + strconv.Itoa(line) + ":"
	if !strings.Contains(errb.String(), want) || !strings.Contains(errb.String(), `"interfase"`) {
		t.Errorf("stderr %q does not name %s and the key", errb.String(), want)
	}
}

// TestSampleShowsDefaults uncomments every "# key = value" line of the
// sample config and checks that the values shown equal the built-in
// defaults, so the documentation cannot drift from the code.
func TestSampleShowsDefaults(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("../../configs/tcu-agent.toml")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^(\s*)# ([a-z_]+ = .*)$`)
	uncommented := re.ReplaceAll(src, []byte("$1$2"))
	load := func(data []byte) (*config.Config, *agent.Sections) {
		t.Helper()
		sec := agent.DefaultSections()
		cfg, err := config.Parse("../../configs/tcu-agent.toml", data, sec.Extensions())
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		return cfg, sec
	}
	cfgA, secA := load(src)
	cfgB, secB := load(uncommented)
	opts := []cmp.Option{cmpopts.EquateEmpty(), cmpopts.IgnoreFields(config.Config{}, "Drivers", "Present")}
	if diff := cmp.Diff(cfgA, cfgB, opts...); diff != "" {
		t.Errorf("commented defaults differ from code defaults (-file +uncommented):\n%s", diff)
	}
	if diff := cmp.Diff(secA, secB, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("commented defaults differ from code defaults (-file +uncommented):\n%s", diff)
	}
}
