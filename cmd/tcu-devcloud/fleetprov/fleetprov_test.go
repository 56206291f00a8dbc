package fleetprov_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/fleetprov"
	"github.com/tcu-agent/tcu-agent/provisioning"
	"github.com/tcu-agent/tcu-agent/provisioning/provisioningtest"
)

type cloud struct {
	srv    *fleetprov.Server
	broker *memBroker
	cfg    provisioning.Config
	state  string
}

func newCloud(t testing.TB, validity time.Duration) *cloud {
	t.Helper()
	ca, caKey, err := provisioningtest.NewCA("devcloud test CA")
	if err != nil {
		t.Fatal(err)
	}
	b := newBroker(ca)
	srv, err := fleetprov.New(fleetprov.Options{
		Broker: b, Registry: b, CACert: ca, CAKey: caKey, Validity: validity,
		Templates: map[string]fleetprov.Template{"TelematicsFleetV1": {
			ThingNamePrefix: "tcu-", ThingNameParam: "SerialNumber", Required: []string{"HardwareModel"},
			DeviceConfiguration: map[string]string{"TelemetryTopic": "dt/tcu/telemetry"},
		}},
		ESTUsers: map[string]string{"installer": "s3cret"},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	dir := t.TempDir()
	cert, key, err := provisioningtest.WriteClaim(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := provisioning.DefaultConfig()
	cfg.ClaimCert, cfg.ClaimKey, cfg.Template = cert, key, "TelematicsFleetV1"
	cfg.SerialNumber, cfg.HardwareModel = "SN0042", "tcu-c2"
	cfg.StepTimeout = provisioning.Duration(5 * time.Second)
	cfg.RetryMin, cfg.RetryMax = provisioning.Duration(5*time.Millisecond), provisioning.Duration(20*time.Millisecond)
	return &cloud{srv: srv, broker: b, cfg: cfg, state: dir + "/state"}
}

func (c *cloud) provisioner(t *testing.T) *provisioning.Provisioner {
	t.Helper()
	p, err := provisioning.New(provisioning.Options{Config: c.cfg, StateDir: c.state, Dial: c.broker.Dial})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProvisionAgainstFleetprov(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{provisioning.KeyModeCSR, provisioning.KeyModeCreateKeys} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			c := newCloud(t, 0)
			c.cfg.KeyMode = mode
			id, err := c.provisioner(t).Ensure(context.Background())
			if err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			if id.Thing != "tcu-SN0042" {
				t.Errorf("thing %q", id.Thing)
			}
			if want := time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC); !id.NotAfter.Equal(want) {
				t.Errorf("NotAfter %s, want AWS's %s", id.NotAfter, want)
			}
			if got := c.srv.Issued(); got != 1 {
				t.Errorf("issued %d", got)
			}
			// The new identity connects as its thing; the broker checks activation.
			conn, err := c.broker.Dial(context.Background(), id.Certificate, id.Thing)
			if err != nil {
				t.Fatalf("connect with new identity: %v", err)
			}
			conn.Close()
		})
	}
}

func TestFleetprovRejections(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		template string
		faults   fleetprov.Faults
		noHW     bool
		wantCode string
	}{
		{name: "unknown template", template: "Nope", wantCode: "ResourceNotFound"},
		{name: "missing parameter", noHW: true, wantCode: "InvalidParameters"},
		{name: "register refused", faults: fleetprov.Faults{RejectRegister: &fleetprov.Rejection{StatusCode: 403, ErrorCode: "AccessDenied", ErrorMessage: "hook denied"}}, wantCode: "AccessDenied"},
		{name: "create refused", faults: fleetprov.Faults{RejectCreate: &fleetprov.Rejection{StatusCode: 400, ErrorCode: "InvalidPayload", ErrorMessage: "CSR is malformed"}}, wantCode: "InvalidPayload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newCloud(t, 0)
			if tt.template != "" {
				c.cfg.Template = tt.template
			}
			if tt.noHW {
				c.cfg.HardwareModel = ""
			}
			c.srv.SetFaults(tt.faults)
			_, err := c.provisioner(t).Ensure(context.Background())
			var rej *provisioning.RejectedError
			if !errors.As(err, &rej) || rej.ErrorCode != tt.wantCode {
				t.Fatalf("Ensure = %v, want rejection %s", err, tt.wantCode)
			}
			if got := c.srv.Issued(); got > 1 {
				t.Errorf("issued %d certificates for one device", got)
			}
		})
	}
}

func TestFleetprovDropAndDelay(t *testing.T) {
	t.Parallel()
	c := newCloud(t, 0)
	c.cfg.StepTimeout = provisioning.Duration(time.Second) // generous: a late create answer would mint twice
	c.srv.SetFaults(fleetprov.Faults{DropAt: fleetprov.StepRegister, DropCount: 1, Delay: 10 * time.Millisecond})
	id, err := c.provisioner(t).Ensure(context.Background())
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if got := c.srv.Issued(); got != 1 {
		t.Errorf("issued %d, want 1 (token reused after the dropped session)", got)
	}
	if things := c.srv.Things(); len(things) != 1 {
		t.Errorf("things %v", things)
	}
	_ = id
}

func TestFleetprovRenewal(t *testing.T) {
	t.Parallel()
	c := newCloud(t, 20*24*time.Hour)
	p := c.provisioner(t)
	old, err := p.Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !p.NeedsRenewal(old) {
		t.Fatalf("certificate valid until %s does not need renewal", old.NotAfter)
	}
	conn, err := c.broker.Dial(context.Background(), old.Certificate, old.Thing)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	id, err := p.Renew(context.Background(), conn)
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if id.Certificate.Leaf.SerialNumber.Cmp(old.Certificate.Leaf.SerialNumber) == 0 || id.Thing != old.Thing {
		t.Errorf("renewed %+v from %+v", id, old)
	}
}

// TestConcurrentDevicesGetTheirOwnAnswers provisions several devices at
// once through one broker: each must end up with its own thing and key.
func TestConcurrentDevicesGetTheirOwnAnswers(t *testing.T) {
	t.Parallel()
	c := newCloud(t, 0)
	c.srv.SetFaults(fleetprov.Faults{Delay: 100 * time.Millisecond}) // all devices wait at once
	const n = 4
	ids := make([]*provisioning.Identity, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cfg := c.cfg
		cfg.KeyMode = provisioning.KeyModeCreateKeys
		cfg.SerialNumber = fmt.Sprintf("SN%d", i)
		p, err := provisioning.New(provisioning.Options{Config: cfg, StateDir: filepath.Join(t.TempDir(), "state"), Dial: c.broker.Dial})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { ids[i], errs[i] = p.Ensure(context.Background()) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("device %d: %v", i, errs[i])
		}
		if want := fmt.Sprintf("tcu-SN%d", i); ids[i].Thing != want {
			t.Errorf("device %d got thing %q, want %q", i, ids[i].Thing, want)
		}
		conn, err := c.broker.Dial(context.Background(), ids[i].Certificate, ids[i].Thing)
		if err != nil {
			t.Errorf("device %d: its certificate is not the one activated for %s: %v", i, ids[i].Thing, err)
			continue
		}
		conn.Close()
	}
	if got := c.srv.Issued(); got != n {
		t.Errorf("issued %d certificates for %d devices", got, n)
	}
}
