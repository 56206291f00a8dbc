package provisioning_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcu-agent/tcu-agent/provisioning"
	"github.com/tcu-agent/tcu-agent/provisioning/provisioningtest"
)

func TestEnsureProvisionsFromClaim(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{provisioning.KeyModeCSR, provisioning.KeyModeCreateKeys} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.cfg.KeyMode = mode
			id, err := e.provisioner(t).Ensure(context.Background())
			if err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			if id.Thing != "tcu-SN0042" || id.Source != provisioning.MethodFleet {
				t.Errorf("identity = %q from %q, want tcu-SN0042 from fleet", id.Thing, id.Source)
			}
			if err := id.Certificate.Leaf.CheckSignatureFrom(e.fake.CA()); err != nil {
				t.Errorf("certificate not issued by the provisioning CA: %v", err)
			}
			if got := e.fake.Minted(); got != 1 {
				t.Errorf("minted %d certificates, want 1", got)
			}
			if v := e.fake.Violations(); len(v) != 0 {
				t.Errorf("protocol violations: %v", v)
			}
			if diff := cmp.Diff([]string{"SN0042"}, e.fake.Dials()); diff != "" {
				t.Errorf("claim client IDs (-want +got):\n%s", diff)
			}
			loaded, err := provisioning.Load(e.stateDir)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if loaded.Thing != id.Thing || loaded.CertFile != id.CertFile || !loaded.NotAfter.Equal(id.NotAfter) {
				t.Errorf("Load = %+v, want %+v", loaded, id)
			}
			if diff := cmp.Diff(map[string]string{"Vin": "WVWZZZ1JZXW000001"}, loaded.DeviceConfiguration); diff != "" {
				t.Errorf("deviceConfiguration (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEnsureReportsSteps(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.provisioner(t).Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"generate_key", "connect_claim", "create_certificate", "register_thing", "persist_identity", "done"}
	if diff := cmp.Diff(want, e.steps); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}
}

func TestEnsureReturnsExistingIdentityWithoutDialing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first, err := e.provisioner(t).Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e.fake.Set(provisioningtest.Knobs{RevokedClaim: true}) // the claim must never be used again
	second, err := e.provisioner(t).Ensure(context.Background())
	if err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	if second.CertFile != first.CertFile || len(e.fake.Dials()) != 1 {
		t.Errorf("second Ensure re-provisioned: %s vs %s, dials %v", second.CertFile, first.CertFile, e.fake.Dials())
	}
}

func TestLoadWithoutIdentity(t *testing.T) {
	t.Parallel()
	if _, err := provisioning.Load(t.TempDir()); !errors.Is(err, provisioning.ErrNoIdentity) {
		t.Errorf("Load = %v, want ErrNoIdentity", err)
	}
}

func TestFileModesAndLayout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, err := e.provisioner(t).Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.stateDir, "identity")
	wantModes := map[string]os.FileMode{dir: 0o700, id.KeyFile: 0o600, filepath.Join(dir, "identity.json"): 0o600}
	for name, want := range wantModes {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode %o, want %o", filepath.Base(name), got, want)
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, en := range ents {
		names = append(names, en.Name())
	}
	want := []string{filepath.Base(id.CertFile), "identity.json", filepath.Base(id.KeyFile), "provisioning.json"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("identity dir (-want +got):\n%s", diff)
	}
}

func TestRegisterSendsDeviceParameters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.provisioner(t).Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The fake echoes Vin into deviceConfiguration; the thing name comes
	// from SerialNumber. Both prove the parameters travelled.
	if diff := cmp.Diff([]string{"tcu-SN0042"}, e.fake.Things()); diff != "" {
		t.Errorf("things (-want +got):\n%s", diff)
	}
}

func TestEnsureSurvivesDelayAndDrop(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.StepTimeout = provisioning.Duration(time.Second) // generous: a late create answer would mint twice
	e.fake.Set(provisioningtest.Knobs{Drop: provisioningtest.StepRegister, DropCount: 2, Delay: 20 * time.Millisecond})
	id, err := e.provisioner(t).Ensure(context.Background())
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if id.Thing != "tcu-SN0042" {
		t.Errorf("thing %q", id.Thing)
	}
	if got := e.fake.Minted(); got != 1 {
		t.Errorf("minted %d, want 1: the ownership token must be reused after a dropped session", got)
	}
}

func TestEnsureReprovisionsUnusableIdentity(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first, err := e.provisioner(t).Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(first.KeyFile, []byte("bit rot"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := provisioning.Load(e.stateDir); err == nil || errors.Is(err, provisioning.ErrNoIdentity) {
		t.Fatalf("Load of a corrupt identity = %v", err)
	}
	second, err := e.provisioner(t).Ensure(context.Background())
	if err != nil {
		t.Fatalf("Ensure after corruption: %v", err)
	}
	if second.KeyFile == first.KeyFile || e.fake.Minted() != 2 {
		t.Errorf("not re-provisioned: key %s, minted %d", second.KeyFile, e.fake.Minted())
	}
	if _, err := os.Stat(filepath.Join(e.stateDir, "identity", "identity.json.broken")); err != nil {
		t.Errorf("broken record not kept for inspection: %v", err)
	}
}
