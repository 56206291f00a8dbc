package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcu-agent/tcu-agent/agent/ctl"
)

func statusFixture() ctl.Status {
	t0 := time.Date(2026, 11, 22, 1, 2, 3, 0, time.UTC)
	return ctl.Status{
		Version: "1.2.3", Time: t0, StartedAt: t0.Add(-90 * time.Minute),
		Identity:            ctl.Identity{Thing: "tcu-0042", Source: "provisioned", CertExpiry: t0.AddDate(0, 0, 30)},
		Connection:          ctl.Connection{State: "connected", Endpoint: "127.0.0.1:8883", Since: t0.Add(-time.Minute), Reconnects: 2, Published: 100, Acked: 99},
		Queues:              []ctl.Queue{{Class: "telemetry", Records: 1234, Bytes: 56789, OldestUnsentSeconds: 12.5, Evicted: 4, Shed: 2, Expired: 1}},
		Store:               ctl.Store{Leased: 64, Appends: 5000, Syncs: 120, DiskBytes: 7_500_000, Closed: true, Reopens: 3},
		Buses:               []ctl.Bus{{Name: "can0", Driver: "powertrain", State: "running", FramesPerSec: 812.5, Frames: 1000000, DecodeErrors: 3, KernelDrops: 1}},
		LastCommand:         &ctl.Command{ID: "c-1", Name: "door.lock", Status: "SUCCEEDED", At: t0.Add(-5 * time.Second)},
		Commands:            ctl.Commands{Succeeded: 7, Failed: 1, Rejected: 2, TimedOut: 1, Wakes: 3},
		OldestUnsentSeconds: 12.5,
		Health: ctl.Health{OK: true, Why: "degraded: gnss: no fix",
			Loops: []ctl.Loop{{Name: "batcher", Critical: true, AgeSeconds: 0.5}}},
		Profile: &ctl.Profile{Name: "deep_sleep", Reason: "battery guard critical: battery 11.50 V < 11.6 V for 2m0s", Since: t0.Add(-3 * time.Minute),
			Battery: "critical", BatteryReason: "battery 11.50 V < 11.6 V for 2m0s", Voltage: &volt, Publish: []string{"critical"}, TelemetryIntervalSeconds: 600},
	}
}

var volt = 11.5

// serveStatus serves st on a fresh control socket until the test ends.
func serveStatus(t *testing.T, st ctl.Status) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ctl.sock")
	ln, err := ctl.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ctl.ServeListener(ctx, ln, func() ctl.Status { return st }) }()
	t.Cleanup(func() { cancel(); <-done })
	return path
}

func TestStatusTable(t *testing.T) {
	t.Parallel()
	path := serveStatus(t, statusFixture())
	var out, errOut bytes.Buffer
	if err := subcommands["status"].dispatch(context.Background(), []string{"--socket", path}, &out, &errOut); err != nil {
		t.Fatalf("status: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{
		"agent          1.2.3, up 1h30m0s",
		"health         ok (degraded: gnss: no fix)",
		"identity       tcu-0042 (provisioned, certificate expires 2026-12-22, in 30d)",
		"connection     connected 127.0.0.1:8883 for 1m0s (2 reconnects, 100 published, 99 acked)",
		"oldest unsent  12.5s",
		"profile        deep_sleep for 3m0s (battery guard critical: battery 11.50 V < 11.6 V for 2m0s)",
		"telemetry      every 10m0s",
		"battery        critical at 11.50 V (battery 11.50 V < 11.6 V for 2m0s); publishing only critical, the rest buffered",
		"last command   door.lock c-1 SUCCEEDED, 5s ago",
		"commands       7 succeeded, 1 failed, 2 rejected, 1 timed out; 3 bus wake-ups",
		"telemetry  1234     56789  12.5s   4        2     1",
		"store      64 leased, 5000 appends, 120 syncs, 0 corrupt, 0 torn at start, 7.5 MB on disk, closed while idle (3 reopens)",
		"can0  powertrain  running  812.5     1000000  3           1             0       -",
		"batcher  true      500ms ago",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestStatusJSON(t *testing.T) {
	t.Parallel()
	path := serveStatus(t, statusFixture())
	var out bytes.Buffer
	if err := subcommands["status"].dispatch(context.Background(), []string{"--json", "--socket=" + path}, &out, &out); err != nil {
		t.Fatal(err)
	}
	var got ctl.Status
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, out.String())
	}
	if diff := cmp.Diff(statusFixture(), got); diff != "" {
		t.Errorf("--json mismatch (-want +got):\n%s", diff)
	}
}

func TestStatusExitCodes(t *testing.T) {
	t.Parallel()
	unhealthy := statusFixture()
	unhealthy.Health = ctl.Health{OK: false, Why: "hung: batcher silent for 40s"}
	unhealthy.Identity = ctl.Identity{Source: "provisioning"}
	path := serveStatus(t, unhealthy)

	var out bytes.Buffer
	err := subcommands["status"].dispatch(context.Background(), []string{"--socket", path}, &out, &out)
	if !errors.Is(err, errSilentFailure) {
		t.Errorf("unhealthy agent: err = %v, want errSilentFailure", err)
	}
	for _, want := range []string{"UNHEALTHY (hung: batcher silent for 40s)", "not provisioned (provisioning)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	err = subcommands["status"].dispatch(context.Background(), []string{"--socket", filepath.Join(t.TempDir(), "none.sock")}, &out, &out)
	if exitCode(err) != 3 || !errors.Is(err, ctl.ErrNotRunning) {
		t.Errorf("no agent: err = %v (exit %d), want ErrNotRunning, exit 3", err, exitCode(err))
	}
	if err := subcommands["status"].dispatch(context.Background(), []string{"extra"}, &out, &out); exitCode(err) != 2 {
		t.Errorf("bad usage: exit %d, want 2", exitCode(err))
	}
}

// TestStatusConfig finds the control socket through --config.
func TestStatusConfig(t *testing.T) {
	t.Parallel()
	path := serveStatus(t, statusFixture())
	demo, err := os.ReadFile("../../configs/demo.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(demo), `ctl_socket = "/tmp/tcu-demo/ctl.sock"`, fmt.Sprintf("ctl_socket = %q", path), 1)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "tcu-agent.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	dbc, err := os.ReadFile("../../configs/vehicle.dbc") // demo.toml names it relative to itself
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vehicle.dbc"), dbc, 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := subcommands["status"].dispatch(context.Background(), []string{"--config", cfgPath}, &out, &out); err != nil {
		t.Fatalf("status --config: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "tcu-0042") {
		t.Errorf("status --config printed:\n%s", out.String())
	}
	err = subcommands["status"].dispatch(context.Background(), []string{"--config", cfgPath, "--socket", path}, &out, &out)
	if exitCode(err) != 2 {
		t.Errorf("--config with --socket: exit %d, want 2", exitCode(err))
	}
}
