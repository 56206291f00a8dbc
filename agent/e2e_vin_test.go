package agent_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/fleetprov"
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
	"github.com/tcu-agent/tcu-agent/drivers/sim"
	"github.com/tcu-agent/tcu-agent/provisioning"
)

// TestProvisionWithVIN: the obd driver reads the VIN from tcu-sim's OBD-II
// ECU and provisioning sends it to RegisterThing as "Vin". The fleet
// template names the thing after the VIN, so the identity on disk proves
// the parameter arrived.
func TestProvisionWithVIN(t *testing.T) {
	const vin = "1G1JC5444R7252367"
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
		Templates: map[string]fleetprov.Template{"TcuFleetTemplate": {ThingNameParam: "Vin", Required: []string{"SerialNumber"}}},
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

	// The vehicle with its OBD-II ECU on the served bus.
	db, _, err := dbc.Load("../configs/vehicle.dbc")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "vbus.sock")
	bus := canbus.NewVirtual()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { _ = canbus.Serve(ctx, ln, bus) })
	v, err := sim.New(sim.Options{Bus: bus.Attach(), DB: db, Logger: log.With("program", "sim")})
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = v.Run(ctx) })
	ecu, err := sim.NewECU(sim.ECUOptions{Bus: bus.Attach(), State: v.State, VIN: vin})
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = ecu.Run(ctx) })

	cfgPath := writeTLSConfig(t, dir, cloud.TLSAddr(), filepath.Join(caDir, devcloud.CACertFile), claimCert, claimKey, "SN-VIN-7", "")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, cfgPath, string(cfg)+`
[[driver]]
name = "obd"
kind = "obd"
transport = "vbus"
address = "`+sock+`"
`)
	c, sec, err := agent.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Options{Config: c, Sections: sec, Logger: log.With("program", "agent")})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	state := filepath.Join(dir, "state")
	waitFor(t, "an identity named after the VIN", 90*time.Second, func() bool {
		id, err := provisioning.Load(state)
		return err == nil && id.Thing == vin
	})
	stop()
	if err := <-done; err != nil {
		t.Errorf("agent Run: %v", err)
	}
	if got := fp.Things(); len(got) != 1 {
		t.Errorf("registered things = %v, want one (named %s)", got, vin)
	}
}
