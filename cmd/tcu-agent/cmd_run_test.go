package main

import (
	"bytes"
	"context"
	"log/slog"
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

// TestReloadAppliesLogLevelAndNamesRestarts: SIGHUP's reload applies the
// log level at once, names the sections whose changes need a restart, and
// keeps everything when the file became invalid.
func TestReloadAppliesLogLevelAndNamesRestarts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src, err := os.ReadFile("../../configs/demo.toml")
	if err != nil {
		t.Fatal(err)
	}
	dbcText, err := os.ReadFile("../../configs/vehicle.dbc")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vehicle.dbc"), dbcText, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "tcu-agent.toml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(string(src))
	cfg, sec, err := agent.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	level := new(slog.LevelVar)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: level}))
	a, err := agent.New(agent.Options{Config: cfg, Sections: sec, Logger: log, LogLevel: level})
	if err != nil {
		t.Fatal(err)
	}

	edited := strings.Replace(string(src), `log_level = "info"`, `log_level = "debug"`, 1)
	edited = strings.Replace(edited, `batch_latency = "500ms"`, `batch_latency = "400ms"`, 1)
	write(edited)
	log.Debug("before the reload")
	reload(t.Context(), path, "", a, level, log)
	log.Debug("after the reload")
	out := logs.String()
	if strings.Contains(out, "before the reload") || !strings.Contains(out, "after the reload") {
		t.Errorf("log level not applied:\n%s", out)
	}
	if !strings.Contains(out, "sections=mqtt") {
		t.Errorf("the mqtt change is not named as needing a restart:\n%s", out)
	}

	logs.Reset()
	write("version = 1\n[agent]\nlog_levle = \"warn\"\n")
	reload(t.Context(), path, "", a, level, log)
	if level.Level() != slog.LevelDebug || !strings.Contains(logs.String(), "config not reloaded") {
		t.Errorf("invalid file: level %v, log:\n%s", level.Level(), logs.String())
	}
}
