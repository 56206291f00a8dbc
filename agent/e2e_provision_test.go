package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent"
	"github.com/tcu-agent/tcu-agent/agent/agenttest"
	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/fleetprov"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
	"github.com/tcu-agent/tcu-agent/provisioning"
)

// provisionRig is the dev cloud with fleet provisioning over mTLS, the
// simulated vehicle, and an agent config holding only a claim certificate.
type provisionRig struct {
	t       *testing.T
	ctx     context.Context
	dir     string
	log     *slog.Logger
	cloud   *devcloud.Cloud
	fp      *fleetprov.Server
	cfgPath string

	mu      sync.Mutex
	devices []string // "topic device" of every telemetry message
}

const rigSerial = "SN-E2E-0042"

func newProvisionRig(t *testing.T, ctx context.Context, extraProvisioning string) *provisionRig {
	t.Helper()
	r := &provisionRig{t: t, ctx: ctx, dir: t.TempDir(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if testing.Verbose() {
		r.log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	caDir := filepath.Join(r.dir, "ca")
	var err error
	r.cloud, err = devcloud.New(devcloud.Options{TLSAddr: "127.0.0.1:0", CADir: caDir, Logger: r.log.With("program", "devcloud")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.cloud.Close() })
	ca := r.cloud.CA()
	r.fp, err = fleetprov.New(fleetprov.Options{
		Broker: r.cloud, Registry: r.cloud, CACert: ca.Cert, CAKey: ca.Key, Logger: r.log.With("program", "fleetprov"),
		Templates: map[string]fleetprov.Template{"TcuFleetTemplate": {ThingNameParam: "SerialNumber"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.fp.Close() })
	if err := r.cloud.Start(ctx); err != nil {
		t.Fatal(err)
	}
	claim, err := ca.MintClaim("fleet-claim")
	if err != nil {
		t.Fatal(err)
	}
	claimCert, claimKey, err := claim.WriteFiles(r.dir, "claim")
	if err != nil {
		t.Fatal(err)
	}
	r.cloud.Subscribe("dt/tcu/+/telemetry", func(topic string, p []byte) {
		var env struct {
			Device string `json:"device"`
		}
		if json.Unmarshal(p, &env) == nil {
			r.mu.Lock()
			r.devices = append(r.devices, topic+" "+env.Device)
			r.mu.Unlock()
		}
	})
	db, _, err := dbc.Load("../configs/vehicle.dbc")
	if err != nil {
		t.Fatal(err)
	}
	startVehicle(t, ctx, db, filepath.Join(r.dir, "vbus.sock"), r.log)
	r.cfgPath = writeTLSConfig(t, r.dir, r.cloud.TLSAddr(), filepath.Join(caDir, devcloud.CACertFile), claimCert, claimKey, rigSerial, extraProvisioning)
	return r
}

// runAgent runs the agent until until() holds (or d passes), then stops it.
func (r *provisionRig) runAgent(d time.Duration, what string, until func() bool) {
	r.t.Helper()
	cfg, sec, err := agent.LoadConfig(r.cfgPath)
	if err != nil {
		r.t.Fatal(err)
	}
	a, err := agent.New(agent.Options{Config: cfg, Sections: sec, Logger: r.log.With("program", "agent")})
	if err != nil {
		r.t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(r.ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }() // stopped below
	waitFor(r.t, what, d, until)
	stop()
	if err := <-done; err != nil {
		r.t.Errorf("agent Run: %v", err)
	}
}

// published reports whether telemetry arrived from the provisioned thing.
func (r *provisionRig) published() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.devices {
		if s == "dt/tcu/"+rigSerial+"/telemetry "+rigSerial {
			return true
		}
	}
	return false
}

// TestProvisionByClaimThenPublish is the provisioning acceptance test
// through the whole stack: an agent with only the fleet's claim
// certificate connects to the dev cloud over mutual TLS, trades the claim
// for its own identity (CreateCertificateFromCsr + RegisterThing), then
// publishes telemetry as its thing; restarted, it reuses that identity and
// never mints another certificate.
func TestProvisionByClaimThenPublish(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := newProvisionRig(t, ctx, "")
	began := time.Now()
	r.runAgent(60*time.Second, "telemetry from the provisioned thing", r.published)
	t.Logf("start -> provisioned -> first telemetry -> stopped: %s", time.Since(began).Round(10*time.Millisecond))
	if n := r.fp.Issued(); n != 1 {
		t.Errorf("certificates issued = %d, want 1", n)
	}
	id, err := provisioning.Load(filepath.Join(r.dir, "state"))
	if err != nil || id.Thing != rigSerial || id.Source != "fleet" {
		t.Fatalf("identity on disk = %+v, %v", id, err)
	}
	if fi, err := os.Stat(id.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file %s mode %v (%v), want 0600", id.KeyFile, fi.Mode().Perm(), err)
	}

	// Second boot: the persisted identity is used; no new certificate.
	r.mu.Lock()
	r.devices = nil
	r.mu.Unlock()
	r.runAgent(60*time.Second, "telemetry after a restart", r.published)
	if n := r.fp.Issued(); n != 1 {
		t.Errorf("after a restart, certificates issued = %d, want still 1", n)
	}
}

// TestRenewalThroughDevcloud: with a renewal window longer than the
// certificate's life, the running agent renews at once over its own MQTT
// session (the broker allows one connection per client ID), switches
// the session to the new certificate without two connections of one
// client ID overlapping or coming within a second of each other, and
// publishes the certificate event, after which the old certificate is
// INACTIVE: exactly one ACTIVE certificate. The renewed identity keeps
// publishing as its thing and works on the next boot.
func TestRenewalThroughDevcloud(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := newProvisionRig(t, ctx, "")
	logs := &lockedBuffer{}
	r.log = slog.New(slog.NewTextHandler(io.MultiWriter(logs, logSink()), nil))
	r.runAgent(60*time.Second, "telemetry from the provisioned thing", r.published)
	state := filepath.Join(r.dir, "state")
	before, err := provisioning.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	// Renewal window longer than the certificate's life: renew at once.
	cfg, err := os.ReadFile(r.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, r.cfgPath, strings.Replace(string(cfg), "[provisioning]", "[provisioning]\nrenew_before = \"2000000h\"", 1))
	connectsBefore := len(r.cloud.Connects())
	r.runAgent(90*time.Second, "a renewed certificate in use and the old one deactivated", func() bool {
		id, err := provisioning.Load(state)
		return err == nil && !bytes.Equal(before.Certificate.Certificate[0], id.Certificate.Certificate[0]) &&
			r.fp.Count(fleetprov.StatusActive, rigSerial) == 1 && r.fp.Count(fleetprov.StatusInactive, rigSerial) == 1
	})
	id, err := provisioning.Load(state)
	if err != nil || id.Thing != rigSerial || r.fp.Issued() != 2 {
		t.Fatalf("identity after renewal = %+v, %v (issued %d, want 2)", id, err, r.fp.Issued())
	}
	events := r.cloud.Connects()[connectsBefore:]
	if v := connectRateViolations(events); len(v) != 0 {
		t.Errorf("connect-rate violations during renewal: %v", v)
	}
	if n := len(events); n != 2 {
		t.Errorf("%d connects during the renewal run, want 2 (start, switch): %v", n, events)
	}
	if strings.Contains(logs.String(), "renewal failed") {
		t.Errorf("a renewal attempt failed:\n%s", logs.String())
	}
	_, sec, err := agent.LoadConfig(r.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := uplink.DialConn(ctx, sec.MQTT, before.Certificate, rigSerial, r.log); !errors.Is(err, uplink.ErrRefused) {
		if c != nil {
			_ = c.Close()
		}
		t.Errorf("connect with the retired certificate = %v, want a refusal", err)
	}
	r.mu.Lock()
	r.devices = nil
	r.mu.Unlock()
	// The renewed identity on disk works on the next boot.
	r.runAgent(60*time.Second, "telemetry with the renewed certificate", r.published)
}

// connectRateViolations lists CONNECTs of one client ID less than a
// second after the previous one (AWS IoT allows one per second).
func connectRateViolations(events []devcloud.ConnectEvent) []string {
	var out []string
	last := map[string]time.Time{}
	for _, e := range events {
		if t, ok := last[e.ClientID]; ok && e.Time.Sub(t) < time.Second {
			out = append(out, fmt.Sprintf("%s after %s", e.ClientID, e.Time.Sub(t)))
		}
		last[e.ClientID] = e.Time
	}
	return out
}

// TestTLSFailureIsNoHold: a broker whose certificate the device cannot
// verify (a captive portal, TLS interception, a wrong endpoint) is a
// transport failure: many failed handshakes set no hold, and once the
// right broker is reachable the device provisions at once.
func TestTLSFailureIsNoHold(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := newProvisionRig(t, ctx, "")
	other, err := devcloud.LoadOrCreateCA("")
	if err != nil {
		t.Fatal(err)
	}
	wrongCA := filepath.Join(r.dir, "wrong-ca.pem")
	mustWrite(t, wrongCA, string(other.CertPEM))
	good, err := os.ReadFile(r.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(r.dir, "ca", devcloud.CACertFile)
	mustWrite(t, r.cfgPath, strings.Replace(string(good), caFile, wrongCA, 1))
	cfg, sec, err := agent.LoadConfig(r.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 7*time.Second) // connects of one client ID are paced 1.1 s apart
	var steps int
	_, err = agent.Provision(pctx, cfg, sec, r.log, func(s string) {
		if s == provisioning.ProgressConnect {
			steps++
		}
	})
	pcancel()
	var hold *provisioning.HoldError
	if err == nil || errors.As(err, &hold) || errors.Is(err, provisioning.ErrRejected) {
		t.Fatalf("Provision against an unverifiable broker = %v, want a transient error", err)
	}
	if steps <= 3 {
		t.Errorf("%d connect attempts in 7 s, want more than max_rejections (3)", steps)
	}
	mustWrite(t, r.cfgPath, string(good))
	if cfg, sec, err = agent.LoadConfig(r.cfgPath); err != nil {
		t.Fatal(err)
	}
	pctx, pcancel = context.WithTimeout(ctx, 30*time.Second)
	defer pcancel()
	id, err := agent.Provision(pctx, cfg, sec, r.log, nil)
	if err != nil || id.Thing != rigSerial {
		t.Fatalf("Provision with the right broker = %+v, %v: want an identity at once (no hold)", id, err)
	}
}

// lockedBuffer is a goroutine-safe log sink.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func logSink() io.Writer {
	if testing.Verbose() {
		return os.Stderr
	}
	return io.Discard
}

// writeTLSConfig derives an mTLS + fleet provisioning config from the demo.
func writeTLSConfig(t *testing.T, dir, addr, caFile, claimCert, claimKey, serial, extra string) string {
	t.Helper()
	src, err := os.ReadFile("../configs/demo.toml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer(
		"/tmp/tcu-demo/state", filepath.Join(dir, "state"),
		"/tmp/tcu-demo/vbus.sock", filepath.Join(dir, "vbus.sock"),
		"/tmp/tcu-demo/gnss", filepath.Join(dir, "gnss"),
		"/tmp/tcu-demo/ctl.sock", filepath.Join(dir, "ctl.sock"),
		`thing_name = "demo-car-001"`, ``,
		`broker = "tcp://127.0.0.1:18830"`, `broker = "tls://`+addr+`"`+"\n"+`ca_file = "`+caFile+`"`,
		`allow_plaintext = true`, ``,
	).Replace(string(src))
	text = strings.Replace(text, "[commands]", `[provisioning]
method = "fleet"
claim_cert = "`+claimCert+`"
claim_key = "`+claimKey+`"
template = "TcuFleetTemplate"
serial_number = "`+serial+`"
retry_min = "200ms"
retry_max = "2s"
`+extra+`

[commands]`, 1)
	path := filepath.Join(dir, "tcu-agent.toml")
	mustWrite(t, path, text)
	dbcText, err := os.ReadFile("../configs/vehicle.dbc")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "vehicle.dbc"), string(dbcText))
	return path
}

// TestRealBinaryKillDuringProvisioning is the field reproduction with
// the shipped binary: the devcloud carries a request out but holds its
// answer back; the agent process is SIGKILLed in that window and
// restarted without the delay.
//   - inside RegisterThing: the certificate is ACTIVE, the single-use
//     token cannot be used again; the restarted agent must find the
//     certificate ACTIVE by connecting with it (1 issued, 1 ACTIVE);
//   - inside the create request: a PENDING certificate is left behind,
//     the restart mints another (2 issued, 1 ACTIVE, 1 PENDING).
//
// Either way the thing then publishes telemetry.
func TestRealBinaryKillDuringProvisioning(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := agenttest.Build(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                   string
		window                 string
		inWindow               func(fp *fleetprov.Server) bool
		issued, active, pendng int
	}{
		{name: "register", window: "RegisterThing carried out, answer held back",
			inWindow: func(fp *fleetprov.Server) bool { return fp.Count(fleetprov.StatusActive, rigSerial) == 1 },
			issued:   1, active: 1},
		{name: "create", window: "certificate minted, answer held back",
			inWindow: func(fp *fleetprov.Server) bool { return fp.Count(fleetprov.StatusPending, "") == 1 },
			issued:   2, active: 1, pendng: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel() // before the rig's cleanups, which wait for ctx
			r := newProvisionRig(t, ctx, "")
			r.fp.SetFaults(fleetprov.Faults{Delay: 5 * time.Second}) // every answer arrives 5 s late
			first := startBinary(t, bin, r, "agent-1")
			waitFor(t, tt.window, 90*time.Second, func() bool { return tt.inWindow(r.fp) })
			if err := first.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = first.Wait()
			if _, err := provisioning.Load(filepath.Join(r.dir, "state")); !errors.Is(err, provisioning.ErrNoIdentity) {
				t.Fatalf("identity committed before the answer arrived: %v", err)
			}
			r.fp.SetFaults(fleetprov.Faults{})
			second := startBinary(t, bin, r, "agent-2")
			waitFor(t, "telemetry from the provisioned thing after the restart", 90*time.Second, r.published)
			if err := second.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			_ = second.Wait()
			issued, active, pending := r.fp.Issued(), r.fp.Count(fleetprov.StatusActive, ""), r.fp.Count(fleetprov.StatusPending, "")
			if issued != tt.issued || active != tt.active || pending != tt.pendng {
				t.Errorf("issued %d, ACTIVE %d, PENDING %d: want %d, %d, %d", issued, active, pending, tt.issued, tt.active, tt.pendng)
			}
		})
	}
}

// startBinary runs tcu-agent run with the rig's config.
func startBinary(t *testing.T, bin string, r *provisionRig, name string) *exec.Cmd {
	t.Helper()
	logf, err := os.Create(filepath.Join(r.dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = logf.Close() }()
	cmd := exec.Command(bin, "run", "--config", r.cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "NOTIFY_SOCKET" && k != "WATCHDOG_USEC" && k != "WATCHDOG_PID" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(r.dir, name+".log"))
			t.Logf("%s log:\n%s", name, b)
		}
	})
	return cmd
}
