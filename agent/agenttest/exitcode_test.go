package agenttest

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

// TestSystemExitCodes checks every row of the exit-code table in
// docs/operations.md ("Exit codes") against the real binary.
func TestSystemExitCodes(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	s := Start(t, Options{Binary: bin})
	cfg := s.ConfigPath()
	dir := t.TempDir()
	file := filepath.Join(dir, "not-a-dir")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(s.Dir(), "bad.toml")
	if err := os.WriteFile(bad, []byte(strings.Replace(string(src), "[telemetry]", "[telemetry]\nintervall = \"1s\"", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		want   int
		output string // in the output
	}{
		{"0 check-config ok", []string{"check-config", cfg}, 0, ": ok"},
		{"2 unknown verb", []string{"frobnicate"}, 2, `unknown verb "frobnicate"`},
		{"2 unknown flag", []string{"run", "--bogus"}, 2, "bogus"},
		{"78 misspelt key", []string{"run", "--config", bad}, 78, bad + ":"},
		{"78 misspelt key (check-config)", []string{"check-config", bad}, 78, `"intervall"`},
		{"78 state_dir is a regular file", []string{"run", "--config", cfg, "--state-dir", file}, 78, "state_dir " + file + " is not a directory"},
		{"78 state_dir cannot be created", []string{"run", "--config", cfg, "--state-dir", filepath.Join(file, "sub")}, 78, "state_dir " + filepath.Join(file, "sub") + " cannot be created"},
		{"1 other failure", []string{"dbc", filepath.Join(dir, "missing.dbc")}, 1, "missing.dbc"},
	}
	for _, tt := range tests {
		code, out, err := RunBinary(bin, time.Minute, tt.args...)
		if err != nil {
			t.Errorf("%s: %v\n%s", tt.name, err, out)
			continue
		}
		if code != tt.want || !strings.Contains(out, tt.output) {
			t.Errorf("%s: tcu-agent %v: exit %d, want %d; output %q lacks %q?", tt.name, tt.args, code, tt.want, out, tt.output)
		}
	}
}

// TestSystemSignals: SIGTERM and SIGINT stop the agent with exit 0; SIGHUP
// does not stop it (it used to die with status 129): it reloads the log
// level and the telemetry interval (live, docs/operations.md), and capture
// goes on.
func TestSystemSignals(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{Binary: binary(t), Scenario: sim.ScenarioCity, TelemetryInterval: "100ms"})
	a := s.StartAgent()
	s.WaitFor("first telemetry", 30*time.Second, func() bool { return s.Stream.Len() > 0 })
	src, err := os.ReadFile(s.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(src), `log_level = "info"`, `log_level = "debug"`, 1)
	edited = strings.Replace(edited, `[telemetry]`+"\n"+`interval = "100ms"`, `[telemetry]`+"\n"+`interval = "200ms"`, 1)
	if edited == string(src) {
		t.Fatal("config edit did not apply")
	}
	if err := os.WriteFile(s.ConfigPath(), []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := a.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.WaitFor("the reload in the log", 30*time.Second, func() bool {
		l := a.Log()
		return strings.Contains(l, "reload: log level changed") && strings.Contains(l, "reload: configuration applied") && strings.Contains(l, "interval=200ms")
	})
	n := s.Stream.Len()
	s.WaitFor("telemetry after SIGHUP", 30*time.Second, func() bool { return s.Stream.Len() > n })
	if a.Exited() {
		t.Fatalf("agent exited on SIGHUP: %v", a.Err())
	}
	code, took, err := a.Terminate(15 * time.Second)
	if err != nil || code != 0 {
		t.Errorf("SIGTERM: exit %d after %v (%v), want 0", code, took, err)
	}
	// A clean stop buffers every sample already emitted.
	for _, lost := range []string{"not buffered", "lost at stop"} {
		if strings.Contains(a.Log(), lost) {
			t.Errorf("SIGTERM lost records: the log says %q", lost)
		}
	}

	a = s.StartAgent()
	n = s.Stream.Len()
	s.WaitFor("telemetry from run 2", 30*time.Second, func() bool { return s.Stream.Len() > n })
	if err := a.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := a.wait(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	if code := a.state.ExitCode(); code != 0 {
		t.Errorf("SIGINT: exit %d, want 0", code)
	}
}
