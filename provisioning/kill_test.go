package provisioning_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/provisioning"
	"github.com/tcu-agent/tcu-agent/provisioning/provisioningtest"
)

// The kill test re-executes the test binary as a child that provisions
// against a Fake and SIGKILLs itself at a chosen hook point. The Fake's
// CA and token key live in files so successive children share one
// "cloud"; every minted certificate is appended to mints.log.
const (
	killEnvDir   = "TCU_PROV_KILL_DIR"   // shared directory (CA, claim, state, mints.log)
	killEnvPoint = "TCU_PROV_KILL_POINT" // hook point to die at; empty = run to completion
	killEnvNth   = "TCU_PROV_KILL_NTH"   // die at the n-th occurrence (default 1)
	killEnvMode  = "TCU_PROV_KILL_MODE"  // key mode
	killEnvRenew = "TCU_PROV_KILL_RENEW" // "1": provision, then renew with the kill hook armed
)

// Child exit codes.
const (
	exitOK          = 0
	exitFailed      = 1
	exitTooMany     = 3
	exitRejected    = 4
	exitNotReached  = 5
	killMaxCerts    = 3
	killChildBudget = 60 * time.Second
)

func runKillChild() int {
	dir := os.Getenv(killEnvDir)
	point, nth := os.Getenv(killEnvPoint), 1
	if n, err := strconv.Atoi(os.Getenv(killEnvNth)); err == nil {
		nth = n
	}
	seen := 0
	arm := func() {
		provisioning.SetTestHook(func(p string) {
			if p == point {
				if seen++; seen == nth {
					_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
					select {} // never returns
				}
			}
		})
	}
	renew := os.Getenv(killEnvRenew) == "1"
	if !renew {
		arm()
	}
	err := killChildEnsure(dir, os.Getenv(killEnvMode), renew, arm)
	switch {
	case err == nil && point != "":
		return exitNotReached
	case err == nil:
		return exitOK
	case errors.Is(err, provisioning.ErrTooManyCertificates):
		return exitTooMany
	case errors.Is(err, provisioning.ErrRejected):
		return exitRejected
	default:
		fmt.Fprintln(os.Stderr, "child:", err)
		return exitFailed
	}
}

func killChildEnsure(dir, mode string, renew bool, arm func()) error {
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return err
	}
	caKeyPEM, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		return err
	}
	cb, _ := pem.Decode(caPEM)
	kb, _ := pem.Decode(caKeyPEM)
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return err
	}
	fake, err := provisioningtest.New(provisioningtest.Options{
		CA: ca, CAKey: key, TokenKey: []byte("kill-test-token-key"), ThingPrefix: "tcu-", Validity: 24 * time.Hour,
		OnMint: func([]byte) { appendLine(filepath.Join(dir, "mints.log"), "minted") },
	})
	if err != nil {
		return err
	}
	cfg := provisioning.DefaultConfig()
	cfg.KeyMode = mode
	cfg.ClaimCert, cfg.ClaimKey = filepath.Join(dir, "claim.pem"), filepath.Join(dir, "claim.key")
	cfg.Template, cfg.SerialNumber = "TelematicsFleetV1", "SN0042"
	cfg.RetryMin, cfg.RetryMax = provisioning.Duration(time.Millisecond), provisioning.Duration(5*time.Millisecond)
	cfg.MaxCertificates = killMaxCerts
	p, err := provisioning.New(provisioning.Options{Config: cfg, StateDir: filepath.Join(dir, "state"), Dial: fake.Dial})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), killChildBudget)
	defer cancel()
	id, err := p.Ensure(ctx)
	if err != nil || !renew {
		return err
	}
	conn, err := fake.Dial(ctx, id.Certificate, id.Thing)
	if err != nil {
		return err
	}
	defer conn.Close()
	arm()
	_, err = p.Renew(ctx, conn)
	return err
}

func appendLine(name, line string) {
	f, err := os.OpenFile(name, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		panic(err)
	}
	if err := f.Sync(); err != nil {
		panic(err)
	}
}

// killDir prepares a shared directory with CA and claim.
func killDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ca, key, err := provisioningtest.NewCA("kill CA")
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}))
	writeFile(t, filepath.Join(dir, "ca.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if _, _, err := provisioningtest.WriteClaim(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeFile(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// runChild runs one child and returns its exit code, or -9 when it was
// SIGKILLed.
func runChild(t *testing.T, dir, mode, point string, nth int, extraEnv ...string) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.Env = append(cmd.Env, killEnvDir+"="+dir, killEnvPoint+"="+point,
		killEnvNth+"="+strconv.Itoa(nth), killEnvMode+"="+mode, "GORACE=atexit_sleep_ms=0")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return -9
		}
		t.Logf("child output: %s", out)
		return ee.ExitCode()
	default:
		t.Fatalf("run child: %v", err)
		return 0
	}
}

func mints(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "mints.log"))
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// checkOneIdentity asserts exactly one valid identity and no leftovers.
func checkOneIdentity(t *testing.T, dir string) {
	t.Helper()
	id, err := provisioning.Load(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatalf("Load after restart: %v", err)
	}
	if id.Thing != "tcu-SN0042" {
		t.Errorf("thing %q", id.Thing)
	}
	ents, err := os.ReadDir(filepath.Join(dir, "state", "identity"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := []string{filepath.Base(id.CertFile), "identity.json", filepath.Base(id.KeyFile), "provisioning.json"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("identity dir = %v, want %v", names, want)
	}
}

func TestKillAtEachStep(t *testing.T) {
	t.Parallel()
	type kill struct {
		point string
		nth   int
		mints int // certificates the whole sequence may mint
	}
	csr := []kill{
		{"key_generated", 1, 1}, {"file_synced", 1, 1}, {"file_synced", 2, 1}, {"file_synced", 3, 1},
		{"create_received", 1, 2}, {"file_synced", 4, 2}, {"cert_written", 1, 2}, {"file_synced", 5, 2},
		{"cert_created", 1, 1}, {"register_received", 1, 1}, {"file_synced", 6, 1}, {"registered", 1, 1},
		{"file_synced", 7, 1}, {"committed", 1, 1}, {"file_synced", 8, 1},
	}
	createKeys := []kill{
		{"file_synced", 1, 1}, {"create_received", 1, 2}, {"file_synced", 2, 2}, {"file_synced", 3, 2},
		{"cert_created", 1, 1}, {"registered", 1, 1}, {"file_synced", 6, 1},
	}
	for mode, kills := range map[string][]kill{provisioning.KeyModeCSR: csr, provisioning.KeyModeCreateKeys: createKeys} {
		for _, k := range kills {
			t.Run(fmt.Sprintf("%s/%s#%d", mode, k.point, k.nth), func(t *testing.T) {
				t.Parallel()
				dir := killDir(t)
				if code := runChild(t, dir, mode, k.point, k.nth); code != -9 {
					t.Fatalf("child exit %d, want SIGKILL at %s#%d", code, k.point, k.nth)
				}
				if code := runChild(t, dir, mode, "", 0); code != exitOK {
					t.Fatalf("restart exit %d, want 0", code)
				}
				checkOneIdentity(t, dir)
				if got := mints(t, dir); got > k.mints {
					t.Errorf("minted %d certificates, want at most %d", got, k.mints)
				}
				if code := runChild(t, dir, mode, "", 0); code != exitOK || mints(t, dir) > k.mints {
					t.Errorf("third boot exit %d, mints %d: an identity must not be provisioned again", code, mints(t, dir))
				}
			})
		}
	}
}

// TestKillLoopIsBounded dies right after every create answer, as a unit
// stuck in a crash loop would; the loop breaker caps the certificates.
func TestKillLoopIsBounded(t *testing.T) {
	t.Parallel()
	dir := killDir(t)
	var codes []int
	for range killMaxCerts + 3 {
		codes = append(codes, runChild(t, dir, provisioning.KeyModeCSR, "create_received", 1))
	}
	if got := mints(t, dir); got != killMaxCerts {
		t.Errorf("minted %d certificates in a crash loop, want %d", got, killMaxCerts)
	}
	if last := codes[len(codes)-1]; last != exitTooMany {
		t.Errorf("exit codes %v: want the loop breaker (%d) at the end", codes, exitTooMany)
	}
	if _, err := provisioning.Load(filepath.Join(dir, "state")); !errors.Is(err, provisioning.ErrNoIdentity) {
		t.Errorf("Load = %v, want no identity", err)
	}
}

// TestKillDuringRenewal kills the process at each step of a renewal: the
// next boot has exactly one valid identity (old or new) and no leftovers.
func TestKillDuringRenewal(t *testing.T) {
	t.Parallel()
	kills := []struct {
		point   string
		nth     int
		renewed bool // whether the new certificate must be the one in use
	}{
		{"file_synced", 1, false}, // loop-breaker record, before the request
		{"file_synced", 2, false}, // new key written, not renamed
		{"file_synced", 3, false}, // new certificate
		{"file_synced", 4, false}, // identity.json temp, before the rename
		{"renew_committed", 1, true},
	}
	for _, k := range kills {
		t.Run(fmt.Sprintf("%s#%d", k.point, k.nth), func(t *testing.T) {
			t.Parallel()
			dir := killDir(t)
			if code := runChild(t, dir, provisioning.KeyModeCSR, k.point, k.nth, killEnvRenew+"=1"); code != -9 {
				t.Fatalf("child exit %d, want SIGKILL", code)
			}
			before, err := provisioning.Load(filepath.Join(dir, "state"))
			if err != nil {
				t.Fatalf("Load after kill: %v", err)
			}
			if code := runChild(t, dir, provisioning.KeyModeCSR, "", 0); code != exitOK {
				t.Fatalf("restart exit %d", code)
			}
			checkOneIdentity(t, dir)
			wantMints := 1
			if k.renewed || k.nth >= 2 {
				wantMints = 2 // the renewal's certificate was minted before the kill
			}
			if got := mints(t, dir); got != wantMints {
				t.Errorf("minted %d, want %d", got, wantMints)
			}
			after, err := provisioning.Load(filepath.Join(dir, "state"))
			if err != nil || after.CertFile != before.CertFile {
				t.Errorf("identity changed across a plain restart: %v", err)
			}
		})
	}
}
