package fleetprov_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tcu-agent/tcu-agent/provisioning"
)

// BenchmarkProvisionFleetprov: a device provisioning by claim (CSR)
// through an in-memory broker against fleetprov.
func BenchmarkProvisionFleetprov(b *testing.B) {
	c := newCloud(b, 0)
	for b.Loop() {
		p, err := provisioning.New(provisioning.Options{Config: c.cfg, StateDir: filepath.Join(b.TempDir(), "s"), Dial: c.broker.Dial})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Ensure(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkESTEnroll: EST /cacerts + /simpleenroll over loopback TLS
// (new TLS session each time) with basic auth, including identity writes.
func BenchmarkESTEnroll(b *testing.B) {
	e := newESTEnv(b)
	e.useBasicAuth(b)
	for b.Loop() {
		e.state = filepath.Join(b.TempDir(), "s")
		if _, err := e.provisioner(b).Ensure(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
