package agenttest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// reapTimeout bounds the wait for a signalled agent to be reaped.
const reapTimeout = 30 * time.Second

// Agent is one run of the tcu-agent binary.
type Agent struct {
	// Run is the run's number within its System, from 1.
	Run int
	// Started is when the process was started.
	Started time.Time

	cmd       *exec.Cmd
	logPath   string
	signalled atomic.Bool      // a test signal was sent: exit is expected
	done      chan struct{}    // closed once the process is reaped
	state     *os.ProcessState // set before done is closed
	ended     time.Time        // set before done is closed
}

// StartAgent runs the binary on the System's config and state dir. The
// process is killed (if still running) and reaped when the test ends.
func (s *System) StartAgent() *Agent {
	s.t.Helper()
	return s.startAgent(nil)
}

// StartAgentAs is StartAgent with the process running as uid:gid (tests
// run as root, whom file permissions do not stop).
func (s *System) StartAgentAs(uid, gid uint32) *Agent {
	s.t.Helper()
	return s.startAgent(&syscall.Credential{Uid: uid, Gid: gid})
}

func (s *System) startAgent(cred *syscall.Credential) *Agent {
	s.t.Helper()
	s.mu.Lock()
	n := len(s.agents) + 1
	s.mu.Unlock()
	logPath := filepath.Join(s.dir, fmt.Sprintf("agent-%d.log", n))
	logf, err := os.Create(logPath)
	if err != nil {
		s.t.Fatal(err)
	}
	defer func() { _ = logf.Close() }() // the child has its own descriptor
	cmd := exec.Command(s.opts.Binary, "run", "--config", s.cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(agentEnv(), s.opts.Env...)
	cmd.SysProcAttr = sysProcAttr()
	cmd.SysProcAttr.Credential = cred
	a := &Agent{Run: n, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	a.Started = time.Now()
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start agent run %d: %v", n, err)
	}
	go func() { // ends when the process exits; every test ends it
		_ = cmd.Wait()
		a.state, a.ended = cmd.ProcessState, time.Now()
		close(a.done)
	}()
	s.mu.Lock()
	s.agents = append(s.agents, a)
	s.mu.Unlock()
	s.t.Cleanup(func() {
		if err := a.unexpectedExit(); err != nil {
			s.t.Error(err)
		}
		if err := a.Kill(); err != nil {
			s.t.Errorf("agent run %d: %v", n, err)
		}
	})
	return a
}

// agentEnv is the test's environment without the variables that would
// make the agent talk to the test's own service manager or journal.
func agentEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "LISTEN_FDS", "LISTEN_PID":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// PID is the process id.
func (a *Agent) PID() int { return a.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (a *Agent) Exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// Kill cuts the agent's power: SIGKILL to its PID, then reap it. Killing
// an agent that already ended is a no-op.
func (a *Agent) Kill() error {
	if a.Exited() {
		return nil
	}
	a.signalled.Store(true)
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill pid %d: %w", a.PID(), err)
	}
	return a.wait(reapTimeout)
}

// Terminate sends SIGTERM and waits up to timeout for the agent to exit
// by itself; it returns the exit code and how long the exit took. On
// timeout the agent is killed and an error returned.
func (a *Agent) Terminate(timeout time.Duration) (code int, took time.Duration, err error) {
	a.signalled.Store(true)
	start := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return -1, 0, fmt.Errorf("terminate pid %d: %w", a.PID(), err)
	}
	if err := a.wait(timeout); err != nil {
		_ = a.Kill()
		return -1, time.Since(start), err
	}
	return a.state.ExitCode(), a.ended.Sub(start), nil
}

func (a *Agent) wait(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-a.done:
		return nil
	case <-t.C:
		return fmt.Errorf("agent pid %d did not exit within %v", a.PID(), timeout)
	}
}

// Err returns an error if the agent ended without a test signal (a
// crash or a fatal error), nil while it runs or after a test stopped it.
func (a *Agent) Err() error { return a.unexpectedExit() }

// KilledBySIGKILL reports whether the reaped process died of SIGKILL
// (rather than exiting by itself first).
func (a *Agent) KilledBySIGKILL() bool {
	if !a.Exited() {
		return false
	}
	ws, ok := a.state.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

func (a *Agent) unexpectedExit() error {
	if !a.Exited() || a.signalled.Load() {
		return nil
	}
	return fmt.Errorf("agent run %d (pid %d) exited on its own: %v", a.Run, a.PID(), a.state)
}

// Signal sends sig to the agent (e.g. SIGHUP; SIGTERM via Terminate). A
// terminating signal marks the exit as expected.
func (a *Agent) Signal(sig syscall.Signal) error {
	if sig != syscall.SIGHUP && sig != syscall.SIGUSR1 && sig != syscall.SIGUSR2 {
		a.signalled.Store(true)
	}
	if err := a.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal pid %d: %w", a.PID(), err)
	}
	return nil
}

// Log returns what the agent wrote to stderr so far.
func (a *Agent) Log() string {
	b, err := os.ReadFile(a.logPath)
	if err != nil {
		return ""
	}
	return string(b)
}

// RunBinary runs the binary with args to completion (at most timeout) and
// returns its exit code and combined output.
func RunBinary(binary string, timeout time.Duration, args ...string) (code int, output string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = agentEnv()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ctx.Err() == nil {
		return ee.ExitCode(), string(out), nil
	}
	if err != nil {
		return -1, string(out), fmt.Errorf("run %s %v: %w", binary, args, err)
	}
	return 0, string(out), nil
}
