package provisioning_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	killEnvCount = "TCU_PROV_KILL_COUNT" // file to write the number of hook points passed
)

// killAny as the kill point counts every hook point, whatever its name.
const killAny = "*"

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
	seen, passed, lastNamed := 0, 0, "start"
	arm := func() {
		provisioning.SetTestHook(func(p string) {
			passed++
			if p == point || point == killAny {
				if seen++; seen == nth {
					where := p
					if p == "file_synced" {
						where = "write after " + lastNamed
					}
					appendLine(filepath.Join(dir, "killed-at"), where)
					_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
					select {} // never returns
				}
			}
			if p != "file_synced" {
				lastNamed = p
			}
		})
	}
	renew := os.Getenv(killEnvRenew) == "1"
	if !renew {
		arm()
	}
	err := killChildEnsure(dir, os.Getenv(killEnvMode), renew, arm)
	if f := os.Getenv(killEnvCount); f != "" {
		appendLine(f, strconv.Itoa(passed))
	}
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
		RegistryFile: filepath.Join(dir, "registry.json"),
		OnMint:       func([]byte) { appendLine(filepath.Join(dir, "mints.log"), "minted") },
	})
	if err != nil {
		return err
	}
	cfg := provisioning.DefaultConfig()
	cfg.KeyMode = mode
	cfg.ClaimCert, cfg.ClaimKey = filepath.Join(dir, "claim.pem"), filepath.Join(dir, "claim.key")
	cfg.Template, cfg.SerialNumber, cfg.ThingName = "TelematicsFleetV1", "SN0042", "tcu-SN0042"
	cfg.RetryMin, cfg.RetryMax = provisioning.Duration(time.Millisecond), provisioning.Duration(5*time.Millisecond)
	cfg.MaxCertificates = killMaxCerts
	cfg.RenewBefore = provisioning.Duration(48 * time.Hour) // certificates live 24 h: always due
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
	conn, err := dialSwitching(ctx, fake, id)
	if err != nil {
		return err
	}
	defer conn.Close()
	arm()
	_, err = p.Renew(ctx, conn)
	return err
}

// switchingConn is a session that moves to another certificate as the
// agent's uplink session does: close, wait out the connect spacing,
// connect with the new certificate, fall back to the old on a refusal.
type switchingConn struct {
	provisioning.Conn
	fake  *provisioningtest.Fake
	thing string
	cert  tls.Certificate
	last  time.Time
}

func dialSwitching(ctx context.Context, fake *provisioningtest.Fake, id *provisioning.Identity) (*switchingConn, error) {
	c, err := fake.Dial(ctx, id.Certificate, id.Thing)
	if err != nil {
		return nil, err
	}
	return &switchingConn{Conn: c, fake: fake, thing: id.Thing, cert: id.Certificate, last: time.Now()}, nil
}

func (s *switchingConn) SwitchCertificate(ctx context.Context, cert tls.Certificate) error {
	_ = s.Close()
	connect := func(c tls.Certificate) (provisioning.Conn, error) {
		if d := 1100*time.Millisecond - time.Since(s.last); d > 0 {
			time.Sleep(d)
		}
		s.last = time.Now()
		return s.fake.Dial(ctx, c, s.thing)
	}
	c, err := connect(cert)
	if err != nil {
		if back, berr := connect(s.cert); berr == nil {
			s.Conn = back
		}
		return err
	}
	s.Conn, s.cert = c, cert
	return nil
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

// checkOneIdentity asserts exactly one valid identity, no leftover
// files, exactly one ACTIVE certificate for the thing in the registry and
// that it is the identity's; it returns the number of PENDING ones.
func checkOneIdentity(t *testing.T, dir string) (pending int) {
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
	slices.Sort(want)
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("identity dir = %v, want %v", names, want)
	}
	certs := registry(t, dir)
	var active []provisioningtest.Certificate
	for _, c := range certs {
		switch c.Status {
		case provisioningtest.StatusActive:
			active = append(active, c)
		case provisioningtest.StatusPending:
			pending++
		}
	}
	if len(active) != 1 {
		t.Fatalf("%d ACTIVE certificates, want exactly 1: %+v", len(active), certs)
	}
	sum := sha256.Sum256(id.Certificate.Certificate[0])
	if active[0].ID != hex.EncodeToString(sum[:]) || active[0].Thing != id.Thing {
		t.Errorf("the ACTIVE certificate %+v is not the identity in use", active[0])
	}
	return pending
}

// killedAt returns the hook point the child died at.
func killedAt(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "killed-at"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// registry reads the shared fake's certificate registry.
func registry(t *testing.T, dir string) []provisioningtest.Certificate {
	t.Helper()
	f, err := provisioningtest.New(provisioningtest.Options{RegistryFile: filepath.Join(dir, "registry.json")})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := f.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

// hookPoints runs the flow once without a kill and returns how many hook
// points it passed.
func hookPoints(t *testing.T, mode string, renew bool) int {
	t.Helper()
	dir := killDir(t)
	count := filepath.Join(dir, "count")
	env := []string{killEnvCount + "=" + count}
	if renew {
		env = append(env, killEnvRenew+"=1")
	}
	if code := runChild(t, dir, mode, "", 0, env...); code != exitOK {
		t.Fatalf("uninterrupted run exit %d", code)
	}
	b, err := os.ReadFile(count)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 5 {
		t.Fatalf("hook points %q, %v", b, err)
	}
	return n
}

// killSweep records what the kill-at-every-point tests saw.
type killSweep struct {
	mu             sync.Mutex
	kills, pending int
	maxPending     int
}

func (k *killSweep) add(pending int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.kills++
	k.pending += pending
	k.maxPending = max(k.maxPending, pending)
}

// TestKillAtEveryPoint SIGKILLs provisioning at every hook point of the
// whole flow (every file write, before and after every request), in
// both key modes, against a registry with single-use ownership tokens;
// after a restart there is exactly one ACTIVE certificate, the one in use.
// PENDING leftovers (certificates whose create answer was lost; AWS
// deletes them when their token expires) are counted and bounded.
func TestKillAtEveryPoint(t *testing.T) {
	t.Parallel()
	var sweep killSweep
	t.Cleanup(func() {
		t.Logf("kills %d, extra PENDING certificates %d in total, at most %d per run", sweep.kills, sweep.pending, sweep.maxPending)
	})
	for _, mode := range []string{provisioning.KeyModeCSR, provisioning.KeyModeCreateKeys} {
		n := hookPoints(t, mode, false)
		for nth := 1; nth <= n; nth++ {
			t.Run(fmt.Sprintf("%s/%d", mode, nth), func(t *testing.T) {
				t.Parallel()
				dir := killDir(t)
				if code := runChild(t, dir, mode, killAny, nth); code != -9 {
					t.Fatalf("child exit %d, want SIGKILL at hook point %d", code, nth)
				}
				if code := runChild(t, dir, mode, "", 0); code != exitOK {
					t.Fatalf("restart exit %d, want 0", code)
				}
				pending := checkOneIdentity(t, dir)
				if pending > 1 {
					t.Errorf("%d PENDING certificates, want at most 1 per kill", pending)
				}
				minted := mints(t, dir)
				if code := runChild(t, dir, mode, "", 0); code != exitOK || mints(t, dir) != minted {
					t.Errorf("third boot exit %d, mints %d -> %d: an identity must not be provisioned again", code, minted, mints(t, dir))
				}
				t.Logf("killed at %s: minted %d, ACTIVE 1, PENDING %d", killedAt(t, dir), minted, pending)
				sweep.add(pending)
			})
		}
	}
}

// TestKillAtEveryRenewalPoint kills a renewal (over a session that
// switches certificates, like the agent's) at every hook point; the
// restarted device renews again or resumes, and ends with exactly one
// ACTIVE certificate: the old one is deactivated by the certificate event.
func TestKillAtEveryRenewalPoint(t *testing.T) {
	t.Parallel()
	n := hookPoints(t, provisioning.KeyModeCSR, true)
	var sweep killSweep
	t.Cleanup(func() {
		t.Logf("renewal kills %d, extra PENDING certificates %d in total, at most %d per run", sweep.kills, sweep.pending, sweep.maxPending)
	})
	for nth := 1; nth <= n; nth++ {
		t.Run(strconv.Itoa(nth), func(t *testing.T) {
			t.Parallel()
			dir := killDir(t)
			if code := runChild(t, dir, provisioning.KeyModeCSR, killAny, nth, killEnvRenew+"=1"); code != -9 {
				t.Fatalf("child exit %d, want SIGKILL at hook point %d", code, nth)
			}
			if _, err := provisioning.Load(filepath.Join(dir, "state")); err != nil {
				t.Fatalf("Load after kill: %v", err)
			}
			if code := runChild(t, dir, provisioning.KeyModeCSR, "", 0, killEnvRenew+"=1"); code != exitOK {
				t.Fatalf("restart exit %d", code)
			}
			pending := checkOneIdentity(t, dir)
			if pending > 1 {
				t.Errorf("%d PENDING certificates, want at most 1", pending)
			}
			t.Logf("killed at %s: minted %d, ACTIVE 1, PENDING %d", killedAt(t, dir), mints(t, dir), pending)
			sweep.add(pending)
		})
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
	for _, c := range registry(t, dir) {
		if c.Status == provisioningtest.StatusActive {
			t.Errorf("ACTIVE certificate %s after a crash loop before RegisterThing", c.ID[:12])
		}
	}
}

// TestKillAfterRegisterThingSent is the field reproduction: the device
// dies after its RegisterThing request was carried out and before the
// answer was persisted. The token is single-use, so re-registering fails;
// the restart must find the certificate ACTIVE by connecting with it.
func TestKillAfterRegisterThingSent(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{provisioning.KeyModeCSR, provisioning.KeyModeCreateKeys} {
		dir := killDir(t)
		if code := runChild(t, dir, mode, "register_received", 1); code != -9 {
			t.Fatalf("%s: child exit %d, want SIGKILL", mode, code)
		}
		if code := runChild(t, dir, mode, "", 0); code != exitOK {
			t.Fatalf("%s: restart exit %d", mode, code)
		}
		checkOneIdentity(t, dir)
		if got := mints(t, dir); got != 1 {
			t.Errorf("%s: minted %d certificates, want 1", mode, got)
		}
	}
}
