package packaging

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tcu-agent/tcu-agent/agent/ctl"
)

// buildAgent builds cmd/tcu-agent into a temporary directory.
func buildAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tcu-agent")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/tcu-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freePort returns a loopback TCP address that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// notifyRecorder collects the datagrams sent to a fake systemd notify socket.
type notifyRecorder struct {
	conn *net.UnixConn
	msgs chan string
	// unmatched holds the messages await read but did not match: a later
	// await may want one of them (the first STATUS= can come before
	// READY=1, and is not sent again while it does not change).
	unmatched []string
}

func newNotifyRecorder(t *testing.T, path string) *notifyRecorder {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	r := &notifyRecorder{conn: conn, msgs: make(chan string, 1000)}
	go func() { // ends when conn is closed at cleanup
		defer close(r.msgs)
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			r.msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return r
}

// await returns once a message containing want arrived, or fails.
func (r *notifyRecorder) await(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	for i, m := range r.unmatched {
		if strings.Contains(m, want) {
			r.unmatched = append(r.unmatched[:i], r.unmatched[i+1:]...)
			return
		}
	}
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-r.msgs:
			if !ok {
				t.Fatalf("notify socket closed before %q", want)
			}
			if strings.Contains(m, want) {
				return
			}
			r.unmatched = append(r.unmatched, m)
		case <-deadline:
			t.Fatalf("no %q on the notify socket within %v", want, timeout)
		}
	}
}

// TestAgentUnderSystemdNotify runs the real agent binary the way the unit
// does (Type=notify, WatchdogSec) against a fake notify socket, with no
// hardware and no reachable broker, and checks READY=1, STATUS=, periodic
// WATCHDOG=1, `tcu-agent status` (table and JSON), the Prometheus endpoint,
// and STOPPING=1 plus a clean exit on SIGTERM. It also checks that a config
// error exits 78, the status RestartPreventExitStatus= relies on.
func TestAgentUnderSystemdNotify(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the agent; not in -short")
	}
	bin := buildAgent(t)
	dir := t.TempDir()
	metricsAddr := freePort(t)
	conf := filepath.Join(dir, "tcu-agent.toml")
	writeConfig(t, conf, fmt.Sprintf(`version = 1
[agent]
thing_name = "e2e-car"
state_dir = %q
[health]
ctl_socket = %q
metrics_addr = %q
[mqtt]
broker = "tcp://127.0.0.1:1"
allow_plaintext = true
`, filepath.Join(dir, "state"), filepath.Join(dir, "ctl.sock"), metricsAddr))

	notify := newNotifyRecorder(t, filepath.Join(dir, "notify.sock"))
	var logs bytes.Buffer
	cmd := exec.Command(bin, "run", "--config", conf)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+filepath.Join(dir, "notify.sock"), "WATCHDOG_USEC=12000000")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	}()

	notify.await(t, "READY=1", 60*time.Second)
	notify.await(t, "STATUS=thing e2e-car", 30*time.Second)
	notify.await(t, "WATCHDOG=1", 30*time.Second)
	notify.await(t, "WATCHDOG=1", 30*time.Second) // periodic: a second one

	checkStatusVerb(t, bin, filepath.Join(dir, "ctl.sock"))
	checkMetrics(t, "http://"+metricsAddr+"/metrics")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	notify.await(t, "STOPPING=1", 30*time.Second)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("agent exit after SIGTERM: %v, want 0", err)
		}
	case <-time.After(20 * time.Second): // TimeoutStopSec
		t.Fatal("agent did not stop within TimeoutStopSec (20s)")
	}

	bad := filepath.Join(dir, "bad.toml")
	writeConfig(t, bad, "version = 1\n[agent]\nthing_nme = \"typo\"\n")
	err := exec.Command(bin, "run", "--config", bad).Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 78 {
		t.Errorf("config error: %v, want exit status 78", err)
	}
}

func writeConfig(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkStatusVerb runs `tcu-agent status` against the running agent.
func checkStatusVerb(t *testing.T, bin, socket string) {
	t.Helper()
	out, err := exec.Command(bin, "status", "--socket", socket).CombinedOutput()
	if err != nil {
		t.Fatalf("tcu-agent status: %v\n%s", err, out)
	}
	for _, want := range []string{"health", "identity       e2e-car", "connection", "oldest unsent", "last command",
		"QUEUE", "telemetry", "BUS", "LOOP"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("tcu-agent status lacks %q:\n%s", want, out)
		}
	}
	out, err = exec.Command(bin, "status", "--json", "--socket", socket).Output()
	if err != nil {
		t.Fatalf("tcu-agent status --json: %v", err)
	}
	var st ctl.Status
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if st.Identity.Thing != "e2e-car" || len(st.Queues) == 0 || !st.Health.OK || len(st.Health.Loops) == 0 {
		t.Errorf("status --json = %+v", st)
	}
}

// checkMetrics scrapes the endpoint and parses it with Prometheus' parser.
func checkMetrics(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("metrics are not valid Prometheus text: %v", err)
	}
	if _, ok := fams["tcu_queue_records"]; !ok || len(fams) < 3 {
		t.Errorf("metrics: %d families, tcu_queue_records present=%v", len(fams), ok)
	}
	// The standard families stock dashboards use.
	for _, name := range []string{"go_goroutines", "go_gc_duration_seconds", "go_memstats_heap_alloc_bytes",
		"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_max_fds", "process_start_time_seconds"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("metrics: no %s family", name)
		}
	}
}
