package provisioning_test

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/provisioning"
	"github.com/tcu-agent/tcu-agent/provisioning/provisioningtest"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	fake     *provisioningtest.Fake
	stateDir string
	cfg      provisioning.Config
	logs     *syncBuffer
	steps    []string
	mu       sync.Mutex
}

// newEnv returns a fake and a fleet config with a claim certificate and
// test-friendly timings.
func newEnv(t *testing.T) *env { return newEnvTB(t) }

func newEnvTB(t testing.TB) *env {
	t.Helper()
	fake, err := provisioningtest.New(provisioningtest.Options{ThingPrefix: "tcu-"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key, err := provisioningtest.WriteClaim(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := provisioning.DefaultConfig()
	cfg.ClaimCert, cfg.ClaimKey = cert, key
	cfg.Template = "TelematicsFleetV1"
	cfg.SerialNumber = "SN0042"
	cfg.HardwareModel = "tcu-c2"
	cfg.StepTimeout = provisioning.Duration(5 * time.Second)
	cfg.RetryMin = provisioning.Duration(5 * time.Millisecond)
	cfg.RetryMax = provisioning.Duration(20 * time.Millisecond)
	return &env{fake: fake, stateDir: dir + "/state", cfg: cfg, logs: &syncBuffer{}}
}

func (e *env) provisioner(t *testing.T) *provisioning.Provisioner {
	t.Helper()
	p, err := provisioning.New(provisioning.Options{
		Config:       e.cfg,
		StateDir:     e.stateDir,
		Dial:         e.fake.Dial,
		Logger:       slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Progress:     func(s string) { e.mu.Lock(); e.steps = append(e.steps, s); e.mu.Unlock() },
		DeviceParams: func() map[string]string { return map[string]string{"Vin": "WVWZZZ1JZXW000001"} },
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
