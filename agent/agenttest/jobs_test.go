package agenttest

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/record/wire"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
)

// newSignal is the signal the good bundle adds; the demo config does not
// map POWERTRAIN.EngineRPM.
const (
	newSignal    = "Vehicle.Powertrain.CombustionEngine.Speed"
	newSignalTOM = `
  [[driver.signal]]
  name = "` + newSignal + `"
  source = "POWERTRAIN.EngineRPM"
  heartbeat = "1s"

`
	gnssDriver = "[[driver]]\nname = \"gnss\""
	jobsHeader = "\n[jobs]\n"
)

// withoutGNSS drops the demo config's GNSS driver: the system tests have
// no receiver, and a driver that cannot open its device makes the agent
// unhealthy, which would fail every bundle's proving.
func withoutGNSS(t *testing.T, c string) string {
	t.Helper()
	i := strings.Index(c, gnssDriver)
	if i < 0 {
		t.Fatalf("the demo config no longer has %q", gnssDriver)
	}
	rest := c[i+len(gnssDriver):]
	end := len(rest)
	if j := strings.Index(rest, "\n["); j >= 0 {
		end = j + 1
	}
	return c[:i] + rest[end:]
}

// payloadWatch records every telemetry and event payload with its arrival.
type payloadWatch struct {
	mu   sync.Mutex
	seen []watched // guarded by mu
}

type watched struct {
	at   time.Time
	text string
}

func (w *payloadWatch) add(_ string, p []byte) {
	if wire.IsCompact(p) {
		if js, err := wire.ToJSON(p); err == nil {
			p = js
		}
	}
	w.mu.Lock()
	w.seen = append(w.seen, watched{at: time.Now(), text: string(p)})
	w.mu.Unlock()
}

// since reports whether a payload received after t contains s.
func (w *payloadWatch) since(t time.Time, s string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.seen {
		if p.at.After(t) && strings.Contains(p.text, s) {
			return true
		}
	}
	return false
}

// jobsRig is a System whose agent takes configuration jobs from the dev
// cloud, with the file server and the fleet key the job documents need.
type jobsRig struct {
	*System
	files   *devcloud.FileServer
	key     ed25519.PrivateKey
	watch   *payloadWatch
	base    string // the agent's config text
	baseDBC []byte
	n       int
}

// requireJobs skips the test when the agent binary has no [jobs]
// support (the jobs branch is not merged) and fails it when the test's
// config is rejected for any other reason.
func requireJobs(t *testing.T, bin, cfgPath string) {
	t.Helper()
	code, out, err := RunBinary(bin, 30*time.Second, "check-config", "--config", cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 && strings.Contains(out, `unknown section or key "jobs"`) {
		t.Skipf("this tcu-agent has no [jobs] support (CONTRACTS C; the jobs branch is not merged): %s", strings.TrimSpace(out))
	}
	if code != 0 {
		t.Fatalf("check-config of the jobs test config: exit %d: %s", code, out)
	}
}

func startJobsRig(t *testing.T) *jobsRig {
	t.Helper()
	bin := binary(t)
	cloudDir, err := os.MkdirTemp("", "agtjobs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(cloudDir) })
	key, err := devcloud.LoadOrCreateFleetKey(cloudDir)
	if err != nil {
		t.Fatal(err)
	}
	files, err := devcloud.NewFileServer(context.Background(), devcloud.FileServerOptions{Dir: cloudDir, Addr: "127.0.0.1:0", Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = files.Close() })
	jobs := fmt.Sprintf(`
[jobs]
public_keys = [%q]
ca_file = %q
proving_time = "5s"
max_bundle_size = "256KiB"
download_timeout = "30s"
`, devcloud.PublicKeyBase64(key), files.CAFile())
	s := Start(t, Options{Binary: bin, TelemetryInterval: "500ms", EditConfig: func(c string) string { return withoutGNSS(t, c) + jobs }})
	requireJobs(t, bin, s.ConfigPath())
	s.Cloud.ServeJobs(cloudDir, files, devcloud.PublicKeyBase64(key))
	r := &jobsRig{System: s, files: files, key: key, watch: &payloadWatch{}}
	s.Cloud.Subscribe("dt/tcu/"+s.Thing()+"/telemetry", r.watch.add)
	s.Cloud.Subscribe("dt/tcu/"+s.Thing()+"/events", r.watch.add)
	b, err := os.ReadFile(s.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	r.base = string(b)
	if r.baseDBC, err = os.ReadFile(filepath.Join(s.Dir(), "vehicle.dbc")); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(r.base, gnssDriver) || strings.Count(r.base, jobsHeader) != 1 {
		t.Fatalf("the jobs test config is not the demo config without GNSS plus [jobs]:\n%s", r.base)
	}
	return r
}

// withSignal is the base config with the new signal on the CAN driver
// (the last driver once GNSS is gone, right before [jobs]).
func (r *jobsRig) withSignal() string {
	return strings.Replace(r.base, jobsHeader, newSignalTOM+jobsHeader, 1)
}

// bundle builds a bundle from a config text and DBC, as job push does
// with a directory.
func (r *jobsRig) bundle(t *testing.T, config string, dbcText []byte, extra map[string][]byte) []byte {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("tcu-agent.toml", []byte(config))
	write("vehicle.dbc", dbcText)
	b, err := devcloud.BuildBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(extra) == 0 {
		return b
	}
	names := []string{"tcu-agent.toml", "vehicle.dbc"}
	files := map[string][]byte{"tcu-agent.toml": []byte(config), "vehicle.dbc": dbcText}
	for n, c := range extra {
		names = append(names, n)
		files[n] = c
	}
	if b, err = devcloud.TarFiles(names, files); err != nil {
		t.Fatal(err)
	}
	return b
}

// push queues a tcu.config.v1 job for bundle signed by key, inline or by
// URL, and returns its ID.
func (r *jobsRig) push(t *testing.T, bundle []byte, key ed25519.PrivateKey, byURL bool) (id, version string) {
	t.Helper()
	r.n++
	id, version = fmt.Sprintf("cfg-%d", r.n), fmt.Sprintf("2026-12-07.%d", r.n)
	doc, err := devcloud.NewDocument(key, version, bundle)
	if err != nil {
		t.Fatal(err)
	}
	var body []byte
	if inline, ok := devcloud.InlineDocument(doc, bundle); ok && !byURL {
		body = inline
	} else {
		name, err := r.files.Put(bundle)
		if err != nil {
			t.Fatal(err)
		}
		doc.URL = devcloud.PresignedURLPlaceholder(name)
		body, _ = json.Marshal(doc)
	}
	if err := r.Cloud.Jobs().Create(devcloud.JobSpec{ID: id, Things: []string{r.Thing()}, Document: body}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // a job left unfinished by a failed test must not block the next one
		if x, _ := r.Cloud.Jobs().Execution(r.Thing(), id); !devcloud.JobTerminal(x.Status) {
			_ = r.Cloud.Jobs().Cancel(id)
		}
	})
	return id, version
}

// final waits for the job's execution to end and returns it.
func (r *jobsRig) final(t *testing.T, id string) devcloud.JobExecution {
	t.Helper()
	var x devcloud.JobExecution
	r.WaitFor("job "+id+" to end", 90*time.Second, func() bool {
		x, _ = r.Cloud.Jobs().Execution(r.Thing(), id)
		return devcloud.JobTerminal(x.Status)
	})
	t.Logf("job %s: %s %v", id, x.Status, x.StatusDetails)
	return x
}

// lastKnownGoodRuns checks that the agent still runs the original config:
// the original signals arrive after t and the new signal never did.
func (r *jobsRig) lastKnownGoodRuns(t *testing.T, after time.Time) {
	t.Helper()
	r.WaitFor("Vehicle.Speed telemetry from the last-known-good config", 30*time.Second, func() bool {
		return r.watch.since(after, `"Vehicle.Speed"`)
	})
	if r.watch.since(time.Time{}, newSignal) {
		t.Fatalf("%s appeared in telemetry although no bundle adding it succeeded", newSignal)
	}
}

// TestJobsEndToEnd pushes configuration bundles through the dev cloud's
// Jobs API to the real agent (CONTRACTS C): every bad bundle ends FAILED
// or REJECTED with the agreed reason while the last-known-good config
// keeps running; a good bundle adding a signal ends SUCCEEDED and the
// signal appears in telemetry. It skips itself when the agent has no
// [jobs] support.
func TestJobsEndToEnd(t *testing.T) {
	r := startJobsRig(t)
	a := r.StartAgent()
	start := time.Now()
	r.WaitFor("telemetry", 30*time.Second, func() bool { return r.watch.since(start, `"Vehicle.Speed"`) })
	_, otherKey, _ := ed25519.GenerateKey(nil)
	good := r.bundle(t, r.withSignal(), r.baseDBC, nil)
	// A DBC that loads but no longer decodes the powertrain frames: the
	// message is declared 16 bytes long, the vehicle sends 8.
	brokenDBC := strings.Replace(string(r.baseDBC), "BO_ 192 POWERTRAIN: 8 ECM", "BO_ 192 POWERTRAIN: 16 ECM", 1)
	if brokenDBC == string(r.baseDBC) {
		t.Fatal("vehicle.dbc no longer declares POWERTRAIN as expected")
	}
	checkLoads(t, brokenDBC)

	bad := []struct {
		name    string
		bundle  []byte
		key     ed25519.PrivateKey
		byURL   bool
		faults  devcloud.FileFaults
		reasons []string
		detail  string
	}{
		{name: "config error", bundle: r.bundle(t, strings.Replace(r.base, "[telemetry]\n", "[telemetry]\nno_such_key = 1\n", 1), r.baseDBC, nil),
			key: r.key, reasons: []string{"invalid_config"}, detail: "tcu-agent.toml:"},
		{name: "bad hash", bundle: good, key: r.key, byURL: true, faults: devcloud.FileFaults{WrongBytes: true},
			reasons: []string{"bad_hash"}},
		{name: "bad signature", bundle: good, key: otherKey, reasons: []string{"bad_signature"}},
		{name: "bundle over max_bundle_size", bundle: r.bundle(t, r.withSignal(), r.baseDBC, map[string][]byte{"pad.bin": make([]byte, 300<<10)}),
			key: r.key, byURL: true, reasons: []string{"too_large"}},
		{name: "download longer than declared", bundle: good, key: r.key, byURL: true, faults: devcloud.FileFaults{Oversize: 1 << 20},
			reasons: []string{"too_large", "download_failed"}},
		{name: "dbc breaks decoding", bundle: r.bundle(t, r.base, []byte(brokenDBC), nil), key: r.key,
			reasons: []string{"unhealthy"}, detail: "decod"}, // unhealthy because of decoding, nothing else
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			r.files.SetFaults(tt.faults)
			defer r.files.SetFaults(devcloud.FileFaults{})
			id, _ := r.push(t, tt.bundle, tt.key, tt.byURL)
			x := r.final(t, id)
			if x.Status != devcloud.JobFailed && x.Status != devcloud.JobRejected {
				t.Fatalf("job %s ended %s %v, want FAILED or REJECTED", id, x.Status, x.StatusDetails)
			}
			if !slices.Contains(tt.reasons, x.StatusDetails["reason"]) {
				t.Errorf("reason %q, want one of %v (detail %q)", x.StatusDetails["reason"], tt.reasons, x.StatusDetails["detail"])
			}
			if !strings.Contains(x.StatusDetails["detail"], tt.detail) {
				t.Errorf("detail %q does not name %q", x.StatusDetails["detail"], tt.detail)
			}
			if a.Exited() {
				t.Fatalf("the agent exited: %v", a.Err())
			}
			r.lastKnownGoodRuns(t, time.Now())
			if tt.name == "dbc breaks decoding" {
				r.decodingClean(t)
			}
		})
	}

	t.Run("good bundle adds a signal", func(t *testing.T) {
		// Pushed with the real tcu-devcloud CLI, served by URL and cut
		// mid-body once: the agent resumes.
		devcloudBin := buildDevcloud(t)
		bundleDir := t.TempDir()
		if err := os.WriteFile(filepath.Join(bundleDir, "tcu-agent.toml"), []byte(r.withSignal()), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bundleDir, "vehicle.dbc"), r.baseDBC, 0o644); err != nil {
			t.Fatal(err)
		}
		r.files.SetFaults(devcloud.FileFaults{TruncateOnce: true})
		defer r.files.SetFaults(devcloud.FileFaults{})
		before := len(r.files.Requests())
		const id, version = "cfg-good", "2026-12-07.good"
		code, out, err := RunBinary(devcloudBin, 3*time.Minute, "job", "push", bundleDir, "--thing", r.Thing(),
			"--addr", r.Cloud.Addr(), "--url", "--job-id", id, "--version", version, "--wait", "150s")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("tcu-devcloud job push: exit %d\n%s", code, out)
		x := r.final(t, id)
		if code != 0 || x.Status != devcloud.JobSucceeded {
			t.Fatalf("good bundle ended %s %v (push exit %d)", x.Status, x.StatusDetails, code)
		}
		if x.StatusDetails["version"] != version {
			t.Errorf("statusDetails version %q, want %q", x.StatusDetails["version"], version)
		}
		reqs := r.files.Requests()[before:]
		resumed := slices.ContainsFunc(reqs, func(q devcloud.FileRequest) bool { return strings.HasPrefix(q.Range, "bytes=") })
		if !resumed {
			t.Errorf("the agent did not resume the cut download with a Range request: %+v", reqs)
		}
		end := time.Now()
		r.WaitFor(newSignal+" in telemetry", 30*time.Second, func() bool { return r.watch.since(end.Add(-10*time.Second), newSignal) })
		if a.Exited() {
			t.Fatalf("the agent exited: %v", a.Err())
		}
		code, out, _ = RunBinary(devcloudBin, time.Minute, "job", "list", "--thing", r.Thing(), "--addr", r.Cloud.Addr())
		if code != 0 || !strings.Contains(out, id+" "+r.Thing()+" SUCCEEDED") {
			t.Errorf("job list: exit %d\n%s", code, out)
		}
	})
}

// buildDevcloud compiles cmd/tcu-devcloud into a temporary directory.
func buildDevcloud(t *testing.T) string {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "tcu-devcloud")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/tcu-devcloud")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build tcu-devcloud: %v\n%s", err, b)
	}
	return out
}

func (r *jobsRig) decodingClean(t *testing.T) {
	t.Helper()
	errs := func() (uint64, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := r.Status(ctx)
		if err != nil {
			return 0, false
		}
		var n uint64
		for _, b := range st.Buses {
			n += b.DecodeErrors
		}
		return n, true
	}
	r.WaitFor("decode errors to stop rising after the rollback", 60*time.Second, func() bool {
		a, ok1 := errs()
		time.Sleep(2 * time.Second) // a rate: the broken DBC gives ~100 errors in 2 s
		b, ok2 := errs()
		return ok1 && ok2 && a == b
	})
}

func checkLoads(t *testing.T, dbcText string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "broken.dbc")
	if err := os.WriteFile(p, []byte(dbcText), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := dbc.Load(p); err != nil {
		t.Fatalf("the decode-breaking DBC must still load (else it tests invalid_config): %v", err)
	}
}
