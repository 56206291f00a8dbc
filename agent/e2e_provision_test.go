package agent_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/fleetprov"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
	"github.com/tcu-agent/tcu-agent/provisioning"
)

// TestProvisionByClaimThenPublish is the provisioning acceptance test
// through the whole stack: an agent with only the fleet's claim
// certificate connects to the dev cloud over mutual TLS, trades the claim
// for its own identity (CreateCertificateFromCsr + RegisterThing), then
// publishes telemetry as its thing; restarted, it reuses that identity and
// never mints another certificate.
func TestProvisionByClaimThenPublish(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	caDir := filepath.Join(dir, "ca")
	cloud, err := devcloud.New(devcloud.Options{TLSAddr: "127.0.0.1:0", CADir: caDir, Logger: log.With("program", "devcloud")})
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close()
	ca := cloud.CA()
	fp, err := fleetprov.New(fleetprov.Options{
		Broker: cloud, Registry: cloud, CACert: ca.Cert, CAKey: ca.Key, Logger: log.With("program", "fleetprov"),
		Templates: map[string]fleetprov.Template{"TcuFleetTemplate": {ThingNameParam: "SerialNumber"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	if err := cloud.Start(ctx); err != nil {
		t.Fatal(err)
	}
	claim, err := ca.MintClaim("fleet-claim")
	if err != nil {
		t.Fatal(err)
	}
	claimCert, claimKey, err := claim.WriteFiles(dir, "claim")
	if err != nil {
		t.Fatal(err)
	}

	const serial = "SN-E2E-0042"
	var mu sync.Mutex
	var devices []string
	cloud.Subscribe("dt/tcu/+/telemetry", func(topic string, p []byte) {
		var env struct {
			Device string `json:"device"`
		}
		if json.Unmarshal(p, &env) == nil {
			mu.Lock()
			devices = append(devices, topic+" "+env.Device)
			mu.Unlock()
		}
	})

	db, _, err := dbc.Load("../configs/vehicle.dbc")
	if err != nil {
		t.Fatal(err)
	}
	startVehicle(t, ctx, db, filepath.Join(dir, "vbus.sock"), log)

	cfgPath := writeTLSConfig(t, dir, cloud.TLSAddr(), filepath.Join(caDir, devcloud.CACertFile), claimCert, claimKey, serial)
	runAgent := func(d time.Duration) {
		t.Helper()
		cfg, sec, err := agent.LoadConfig(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		a, err := agent.New(agent.Options{Config: cfg, Sections: sec, Logger: log.With("program", "agent")})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- a.Run(runCtx) }() // stopped below
		waitFor(t, "telemetry from the provisioned thing", d, func() bool {
			mu.Lock()
			defer mu.Unlock()
			for _, s := range devices {
				if s == "dt/tcu/"+serial+"/telemetry "+serial {
					return true
				}
			}
			return false
		})
		stop()
		if err := <-done; err != nil {
			t.Errorf("agent Run: %v", err)
		}
	}

	runAgent(60 * time.Second)
	if n := fp.Issued(); n != 1 {
		t.Errorf("certificates issued = %d, want 1", n)
	}
	id, err := provisioning.Load(filepath.Join(dir, "state"))
	if err != nil || id.Thing != serial || id.Source != "fleet" {
		t.Fatalf("identity on disk = %+v, %v", id, err)
	}
	if fi, err := os.Stat(id.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file %s mode %v (%v), want 0600", id.KeyFile, fi.Mode().Perm(), err)
	}

	// Second boot: the persisted identity is used; no new certificate.
	mu.Lock()
	devices = nil
	mu.Unlock()
	runAgent(60 * time.Second)
	if n := fp.Issued(); n != 1 {
		t.Errorf("after a restart, certificates issued = %d, want still 1", n)
	}
}

// writeTLSConfig derives an mTLS + fleet provisioning config from the demo.
func writeTLSConfig(t *testing.T, dir, addr, caFile, claimCert, claimKey, serial string) string {
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
