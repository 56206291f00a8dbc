package packaging

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const wantsLink = "etc/systemd/system/multi-user.target.wants/tcu-agent.service"

// dpkgRoot runs dpkg against the throwaway root, chrootless: the maintainer
// scripts run on the host with $DPKG_ROOT set, as they do when an image is
// built with mmdebstrap/dpkg --root.
func dpkgRoot(t *testing.T, dpkg, root string, args ...string) string {
	t.Helper()
	base := []string{"--root=" + root, "--force-script-chrootless", "--log=/dev/null",
		"--force-confdef", "--force-confold"}
	out, stderr, err := run(t, dpkg, append(base, args...)...)
	if err != nil {
		t.Fatalf("dpkg %v: %v\n%s%s", args, err, out, stderr)
	}
	return out + stderr
}

// newDpkgRoot makes an empty root with a dpkg database.
func newDpkgRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"etc", "var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestDebInstallRoot installs the amd64 package into a throwaway root and
// proves the maintainer scripts ran without a running systemd: the user
// exists, the directories have their owners, the unit is enabled. It then
// reinstalls over an edited config (kept), removes (disabled, config and
// identity kept) and purges (config gone, state kept).
func TestDebInstallRoot(t *testing.T) {
	t.Parallel()
	dpkg := requireTool(t, "dpkg")
	requireTool(t, "systemd-sysusers")
	requireTool(t, "systemctl")
	if os.Geteuid() != 0 {
		t.Skip("dpkg --root installs need root (file ownership)")
	}
	deb := findPackage(t, "tcu-agent_*_amd64.deb")
	root := newDpkgRoot(t)

	out := dpkgRoot(t, dpkg, root, "--install", deb)
	t.Logf("install:\n%s", out)
	uid, gid := lookupUser(t, root, "tcu-agent")
	checkDir(t, root, "/var/lib/tcu-agent", 0o700, uid, gid)
	checkDir(t, root, "/etc/tcu-agent/claim", 0o750, 0, gid)
	if dst, err := os.Readlink(filepath.Join(root, wantsLink)); err != nil || dst != "/usr/lib/systemd/system/tcu-agent.service" {
		t.Errorf("unit not enabled: %s -> %q, %v", wantsLink, dst, err)
	}

	// An operator edits the config and disables the unit; a reinstall
	// (upgrade path) keeps both.
	conf := filepath.Join(root, "etc/tcu-agent/tcu-agent.toml")
	edited := "# edited on the vehicle\nversion = 1\n"
	if err := os.WriteFile(conf, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, wantsLink)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/tcu-agent/identity"), []byte("cert"), 0o600); err != nil {
		t.Fatal(err)
	}
	dpkgRoot(t, dpkg, root, "--install", deb)
	if b, _ := os.ReadFile(conf); string(b) != edited {
		t.Errorf("upgrade replaced the edited config:\n%s", b)
	}
	if exists(root, wantsLink) {
		t.Error("upgrade re-enabled a unit the operator disabled")
	}

	// Remove: disabled, conffiles and state kept.
	dpkgRoot(t, dpkg, root, "--install", deb) // idempotent
	if err := os.Symlink("/usr/lib/systemd/system/tcu-agent.service", filepath.Join(root, wantsLink)); err != nil {
		t.Fatal(err)
	}
	removeAndCheck := func() {
		t.Helper()
		dpkgRoot(t, dpkg, root, "--remove", "tcu-agent")
		for _, gone := range []string{wantsLink, "usr/bin/tcu-agent", "usr/lib/systemd/system/tcu-agent.service"} {
			if exists(root, gone) {
				t.Errorf("after remove, %s still exists", gone)
			}
		}
		for _, kept := range []string{"etc/tcu-agent/tcu-agent.toml", "var/lib/tcu-agent/identity"} {
			if !exists(root, kept) {
				t.Errorf("after remove, %s is gone", kept)
			}
		}
	}
	removeAndCheck()

	// Reinstall after a remove: dpkg runs postinst "configure <old>", as
	// for an upgrade, but the unit was enabled when removed, so it is
	// enabled again (debhelper's behaviour).
	dpkgRoot(t, dpkg, root, "--install", deb)
	if !exists(root, wantsLink) {
		t.Error("install after remove left the unit disabled")
	}
	// Disabled by the operator, removed, reinstalled: stays disabled.
	if err := os.Remove(filepath.Join(root, wantsLink)); err != nil {
		t.Fatal(err)
	}
	removeAndCheck()
	dpkgRoot(t, dpkg, root, "--install", deb)
	if exists(root, wantsLink) {
		t.Error("install after remove re-enabled a unit the operator had disabled")
	}
	// The claim directory belongs to the package (dpkg -S knows it).
	if out := dpkgRoot(t, dpkg, root, "-S", "/etc/tcu-agent/claim"); !strings.HasPrefix(out, "tcu-agent: ") {
		t.Errorf("dpkg -S /etc/tcu-agent/claim = %q, want owned by tcu-agent", out)
	}
	if err := os.Symlink("/usr/lib/systemd/system/tcu-agent.service", filepath.Join(root, wantsLink)); err != nil {
		t.Fatal(err)
	}
	removeAndCheck()

	// Purge: conffiles go, the identity and the user stay, no warning.
	out = dpkgRoot(t, dpkg, root, "--purge", "tcu-agent")
	if strings.Contains(out, "/etc/tcu-agent' not empty") { // (/etc itself: only in this scratch root)
		t.Errorf("purge warned:\n%s", out)
	}
	for _, gone := range []string{"etc/tcu-agent", "var/lib/tcu-agent-package"} {
		if exists(root, gone) {
			t.Errorf("after purge, %s still exists", gone)
		}
	}
	// Install after purge: a first install again.
	dpkgRoot(t, dpkg, root, "--install", deb)
	if !exists(root, wantsLink) {
		t.Error("install after purge left the unit disabled")
	}
	dpkgRoot(t, dpkg, root, "--purge", "tcu-agent")
	if !exists(root, "var/lib/tcu-agent/identity") {
		t.Error("purge deleted the device identity")
	}
	if passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd")); !strings.Contains(string(passwd), "tcu-agent:") {
		t.Error("purge deleted the user")
	}
}
