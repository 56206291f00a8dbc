package command_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tcu-agent/tcu-agent/agent/command"
	"github.com/tcu-agent/tcu-agent/agent/command/commandtest"
)

// Environment of the crash child process (TestCrashChild).
const (
	envCrashDir = "TCU_COMMAND_CRASH_DIR"
	envCrashAt  = "TCU_COMMAND_CRASH_AT"
)

// TestCrashBetweenLedgerAndResponse kills (SIGKILL) a child process running
// the engine after the ledger write and before the response, then restarts
// on the same state dir: the response is sent at start, a redelivery gets
// the same answer, and nothing is actuated a second time.
func TestCrashBetweenLedgerAndResponse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		at       string
		wantSt   command.Status
		wantCode string
	}{
		// Killed right after the frame went out: outcome unknown.
		{at: "frame", wantSt: command.StatusFailed, wantCode: command.ReasonInterrupted},
		// Killed after the result was recorded, before the hand-over.
		{at: "finish", wantSt: command.StatusSucceeded, wantCode: command.ReasonOK},
	}
	for _, tt := range tests {
		t.Run(tt.at, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), envCrashDir+"="+dir, envCrashAt+"="+tt.at)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() {
				t.Fatalf("child: want death by SIGKILL, got %v\n%s", err, out)
			}
			if n := frameCount(t, dir); n != 1 {
				t.Fatalf("child sent %d frames, want 1", n)
			}

			h := newHarnessIn(t, dir, nil, nil)
			checkFinal(t, h.final("crash-1", 1), tt.wantSt, tt.wantCode)
			h.send(h.req("crash-1", "door.lock"))
			checkFinal(t, h.final("crash-1", 2), tt.wantSt, tt.wantCode)
			if n := h.tx.Count(); n != 0 {
				t.Errorf("restarted engine sent %d frames, want 0", n)
			}
		})
	}
}

// TestCrashChild is the child process of TestCrashBetweenLedgerAndResponse.
func TestCrashChild(t *testing.T) {
	dir, at := os.Getenv(envCrashDir), os.Getenv(envCrashAt)
	if dir == "" {
		t.Skip("helper process for TestCrashBetweenLedgerAndResponse")
	}
	kill := func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) }
	h := newHarnessIn(t, dir, nil, func(f commandtest.Frame) {
		appendFrame(t, dir, f)
		if at == "frame" {
			kill()
		}
	})
	command.SetHooks(h.eng, nil, func(string) {
		if at == "finish" {
			kill()
		}
	})
	h.send(h.req("crash-1", "door.lock"))
	h.final("crash-1", 1)
	t.Fatal("child survived its crash point")
}

// appendFrame durably logs a frame, so the parent can count them.
func appendFrame(t testing.TB, dir string, f commandtest.Frame) {
	file, err := os.OpenFile(filepath.Join(dir, "frames"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	fmt.Fprintf(file, "%s %v\n", f.Message, f.Signals)
	if err := file.Sync(); err != nil {
		t.Fatal(err)
	}
}

func frameCount(t testing.TB, dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "frames"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}
