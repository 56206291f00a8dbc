package packaging

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const (
	unitFile     = "systemd/tcu-agent.service"
	sysusersFile = "sysusers.d/tcu-agent.conf"
	tmpfilesFile = "tmpfiles.d/tcu-agent.conf"
	// maxExposure is the acceptance bound for systemd-analyze security.
	maxExposure = 2.0
)

// requireTool returns the path of name, or skips the test (fails it when
// TCU_REQUIRE_PACKAGES is set, as in CI).
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("TCU_REQUIRE_PACKAGES") != "" {
			t.Fatalf("%s not installed (scripts/ci.d/40-packaging.sh installs it)", name)
		}
		t.Skipf("%s not installed; skipping (apt-get install systemd dpkg rpm)", name)
	}
	return p
}

func run(t *testing.T, name string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// unitSettings parses a systemd unit file into section → key → values (a
// key may repeat).
func unitSettings(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not key=value: %q", path, line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestUnitSettings pins the settings the product depends on, so that a
// well-meant edit cannot silently drop them. It needs no systemd.
func TestUnitSettings(t *testing.T) {
	t.Parallel()
	u := unitSettings(t, unitFile)
	want := []struct{ section, key, value string }{
		{"Unit", "StartLimitIntervalSec", "0"},
		{"Service", "Type", "notify"},
		{"Service", "NotifyAccess", "main"},
		{"Service", "ExecStart", "/usr/bin/tcu-agent run --config /etc/tcu-agent/tcu-agent.toml"},
		{"Service", "ExecReload", "/bin/kill -HUP $MAINPID"},
		{"Service", "Restart", "always"},
		{"Service", "RestartPreventExitStatus", "78"},
		{"Service", "WatchdogSec", "30s"},
		{"Service", "User", "tcu-agent"},
		{"Service", "StateDirectory", "tcu-agent"},
		{"Service", "StateDirectoryMode", "0700"},
		{"Service", "ConfigurationDirectory", "tcu-agent"},
		{"Service", "RuntimeDirectory", "tcu-agent"},
		{"Service", "ProtectSystem", "strict"},
		{"Service", "NoNewPrivileges", "yes"},
		{"Service", "CapabilityBoundingSet", ""},
		{"Service", "AmbientCapabilities", ""},
		{"Service", "DevicePolicy", "closed"},
		{"Service", "DeviceAllow", "char-ttyS rw"},
		{"Service", "RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_CAN"},
		{"Install", "WantedBy", "multi-user.target"},
	}
	for _, w := range want {
		got := u[w.section][w.key]
		if len(got) != 1 || got[0] != w.value {
			t.Errorf("[%s] %s = %q, want exactly %q", w.section, w.key, got, w.value)
		}
	}
	if _, ok := u["Service"]["DynamicUser"]; ok {
		t.Error("DynamicUser is set; the unit uses a sysusers.d user")
	}
}

// scratchRoot makes a root directory holding the host's unit files (so that
// systemd-analyze finds the targets the unit refers to), our unit and a
// stand-in executable at /usr/bin/tcu-agent.
func scratchRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	unitDir := filepath.Join(root, "usr/lib/systemd/system")
	if err := os.MkdirAll(unitDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, hostDir := range []string{"/usr/lib/systemd/system", "/lib/systemd/system"} {
		if _, err := os.Stat(hostDir); err == nil {
			if _, stderr, err := run(t, "cp", "-a", hostDir+"/.", unitDir+"/"); err != nil {
				t.Fatalf("copy host units: %v\n%s", err, stderr)
			}
			break
		}
	}
	copyFile(t, unitFile, filepath.Join(unitDir, "tcu-agent.service"), 0o644)
	copyFile(t, "/bin/true", filepath.Join(root, "usr/bin/tcu-agent"), 0o755)
	copyFile(t, "/bin/true", filepath.Join(root, "bin/kill"), 0o755) // ExecReload
	return root
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

// TestUnitVerify runs systemd-analyze verify on the unit as installed in a
// scratch root; any message (even a warning such as an unknown key) fails.
func TestUnitVerify(t *testing.T) {
	t.Parallel()
	sa := requireTool(t, "systemd-analyze")
	root := scratchRoot(t)
	stdout, stderr, err := run(t, sa, "verify", "--root="+root, "tcu-agent.service")
	if err != nil || stdout != "" || stderr != "" {
		t.Errorf("systemd-analyze verify: err=%v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for tcu-agent\.service: ([0-9.]+)`)

// TestUnitSecurity checks the sandbox: systemd-analyze security in offline
// mode must rate the unit's exposure at most maxExposure. The level is
// printed (go test -v).
func TestUnitSecurity(t *testing.T) {
	t.Parallel()
	sa := requireTool(t, "systemd-analyze")
	root := scratchRoot(t)
	stdout, stderr, err := run(t, sa, "security", "--offline=true", "--no-pager", "--root="+root, "tcu-agent.service")
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s%s", err, stdout, stderr)
	}
	m := exposureRE.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no overall exposure in output:\n%s%s", stdout, stderr)
	}
	level, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("systemd-analyze security --offline=true: overall exposure %.1f (limit %.1f)", level, maxExposure)
	if level > maxExposure {
		var open []string
		for line := range strings.Lines(stdout) {
			if strings.HasPrefix(line, "✗") {
				open = append(open, strings.Join(strings.Fields(line), " "))
			}
		}
		t.Errorf("exposure %.1f > %.1f; open items:\n%s", level, maxExposure, strings.Join(open, "\n"))
	}
}

// TestSysusersTmpfiles applies the sysusers.d and tmpfiles.d entries to a
// scratch root and checks the user, group and directories they create.
func TestSysusersTmpfiles(t *testing.T) {
	t.Parallel()
	sysusers := requireTool(t, "systemd-sysusers")
	tmpfiles := requireTool(t, "systemd-tmpfiles")
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown in the scratch root")
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, sysusersFile, filepath.Join(root, "usr/lib/sysusers.d/tcu-agent.conf"), 0o644)
	copyFile(t, tmpfilesFile, filepath.Join(root, "usr/lib/tmpfiles.d/tcu-agent.conf"), 0o644)
	if out, stderr, err := run(t, sysusers, "--root="+root, "tcu-agent.conf"); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s%s", err, out, stderr)
	}
	if out, stderr, err := run(t, tmpfiles, "--root="+root, "--create", "tcu-agent.conf"); err != nil {
		t.Fatalf("systemd-tmpfiles: %v\n%s%s", err, out, stderr)
	}
	uid, gid := lookupUser(t, root, "tcu-agent")
	checkDir(t, root, "/var/lib/tcu-agent", 0o700, uid, gid)
	checkDir(t, root, "/etc/tcu-agent/claim", 0o750, 0, gid)
}
