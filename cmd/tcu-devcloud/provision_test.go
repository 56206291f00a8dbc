package main

import (
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
	"github.com/tcu-agent/tcu-agent/provisioning"
)

// TestFleetProvisioningOverMTLS: a device with only the claim
// certificate provisions itself through the devcloud broker over mutual
// TLS (claim permissions), and the certificate it gets is then a thing
// certificate allowed on its own topics only.
func TestFleetProvisioningOverMTLS(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	cloud, err := devcloud.New(devcloud.Options{TLSAddr: "127.0.0.1:0", CADir: filepath.Join(dir, "ca"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close()
	stop, err := startFleetProvisioning(cloud, "", log)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := cloud.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	claim, err := cloud.CA().MintClaim("claim")
	if err != nil {
		t.Fatal(err)
	}
	claimCert, claimKey, err := claim.WriteFiles(dir, "claim")
	if err != nil {
		t.Fatal(err)
	}
	ucfg := uplink.DefaultConfig()
	ucfg.Broker, ucfg.CAFile = "tls://"+cloud.TLSAddr(), filepath.Join(dir, "ca", devcloud.CACertFile)
	pcfg := provisioning.DefaultConfig()
	pcfg.ClaimCert, pcfg.ClaimKey, pcfg.Template, pcfg.SerialNumber = claimCert, claimKey, templateName, "TCU-PROV-1"
	pcfg.RenewBefore = 0
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	p, err := provisioning.New(provisioning.Options{Config: pcfg, StateDir: state, Logger: log,
		Dial: func(ctx context.Context, cert tls.Certificate, clientID string) (provisioning.Conn, error) {
			return uplink.DialConn(ctx, ucfg, cert, clientID, log)
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := p.Ensure(ctx)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if id.Thing != "TCU-PROV-1" {
		t.Errorf("thing = %q", id.Thing)
	}
	conn, err := uplink.DialConn(ctx, ucfg, id.Certificate, id.Thing, log)
	if err != nil {
		t.Fatalf("connect with the provisioned identity: %v", err)
	}
	defer conn.Close()
	if err := conn.Publish(ctx, "dt/tcu/"+id.Thing+"/telemetry", []byte(`{"v":1,"device":"TCU-PROV-1","records":[]}`)); err != nil {
		t.Errorf("publish to own topic: %v", err)
	}
	if err := conn.Publish(ctx, "$aws/certificates/create/json", []byte(`{}`)); err == nil {
		t.Error("a thing certificate may still use the claim topics")
	}
}
