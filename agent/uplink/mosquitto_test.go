package uplink_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// mosquitto is a Debian mosquitto broker started by a test on loopback
// with TLS and required client certificates; identities are the
// certificate CN and the ACL gives each thing only its own topics.
type mosquitto struct {
	t    testing.TB
	bin  string
	conf string
	addr string
	ca   *devcloud.CA
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

// findMosquitto returns the broker binary or skips the test (always
// under -short: these tests run from scripts/ci.d/20-mosquitto.sh). With
// TCU_REQUIRE_MOSQUITTO=1 (set by scripts/ci.d/20-mosquitto.sh) a missing
// broker is a failure.
func findMosquitto(t testing.TB) string {
	if testing.Short() && os.Getenv("TCU_REQUIRE_MOSQUITTO") != "1" {
		t.Skip("integration test against mosquitto: run without -short (scripts/ci.d/20-mosquitto.sh)")
	}
	for _, p := range []string{"mosquitto", "/usr/sbin/mosquitto"} {
		if bin, err := exec.LookPath(p); err == nil {
			return bin
		}
	}
	if os.Getenv("TCU_REQUIRE_MOSQUITTO") == "1" {
		t.Fatal("mosquitto not installed (TCU_REQUIRE_MOSQUITTO=1)")
	}
	t.Skip("mosquitto not installed: apt-get install mosquitto (scripts/ci.d/20-mosquitto.sh)")
	return ""
}

func startMosquitto(t testing.TB) *mosquitto {
	t.Helper()
	bin := findMosquitto(t)
	dir := t.TempDir()
	ca, err := devcloud.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.ServerIdentity()
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath, err := srv.WriteFiles(dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	acl := "user observer\ntopic read #\n\npattern readwrite dt/tcu/%u/#\npattern readwrite cmd/tcu/%u/#\npattern readwrite $aws/things/%u/#\n"
	aclPath := filepath.Join(dir, "acl")
	conf := fmt.Sprintf(`user root
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice
per_listener_settings false
allow_anonymous false
acl_file %s
listener %s 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate true
use_identity_as_username true
tls_version tlsv1.2
`, aclPath, port, filepath.Join(dir, "ca", devcloud.CACertFile), certPath, keyPath)
	confPath := filepath.Join(dir, "mosquitto.conf")
	for p, b := range map[string]string{aclPath: acl, confPath: conf} {
		if err := os.WriteFile(p, []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := &mosquitto{t: t, bin: bin, conf: confPath, addr: addr, ca: ca}
	m.start()
	t.Cleanup(m.stop)
	return m
}

// start runs the broker and waits until it accepts connections.
func (m *mosquitto) start() {
	m.t.Helper()
	m.log = new(bytes.Buffer)
	m.cmd = exec.Command(m.bin, "-c", m.conf)
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		m.t.Fatalf("start mosquitto: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", m.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			m.stop()
			m.t.Fatalf("mosquitto did not listen on %s: %v\n%s", m.addr, err, m.log)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop kills the broker (our own process, by its handle) and waits.
func (m *mosquitto) stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	_ = m.cmd.Wait()
	m.cmd = nil
}
