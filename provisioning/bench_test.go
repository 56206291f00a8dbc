package provisioning_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/tcu-agent/tcu-agent/provisioning"
)

// BenchmarkEnsure measures a full first-boot provisioning against the
// in-memory fake: key generation, CSR, certificate signing (done by the
// fake in-process), RegisterThing and the fsynced identity writes.
func BenchmarkEnsure(b *testing.B) {
	for _, mode := range []string{provisioning.KeyModeCSR, provisioning.KeyModeCreateKeys} {
		b.Run(mode, func(b *testing.B) {
			e := newEnvTB(b)
			e.cfg.KeyMode = mode
			for i := 0; b.Loop(); i++ {
				p, err := provisioning.New(provisioning.Options{Config: e.cfg,
					StateDir: filepath.Join(b.TempDir(), fmt.Sprint(i)), Dial: e.fake.Dial})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := p.Ensure(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLoad measures reading the persisted identity at boot.
func BenchmarkLoad(b *testing.B) {
	e := newEnvTB(b)
	p, err := provisioning.New(provisioning.Options{Config: e.cfg, StateDir: e.stateDir, Dial: e.fake.Dial})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := p.Ensure(context.Background()); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := provisioning.Load(e.stateDir); err != nil {
			b.Fatal(err)
		}
	}
}
