package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestMaintainerScriptsRPMArgs runs the shared maintainer scripts with RPM's
// arguments ($1 = 1 install, 2 upgrade for %post; 0 removal, 1 upgrade for
// %preun) against a scratch root, the way TestDebInstallRoot runs them
// through dpkg with Debian's. ($DPKG_ROOT is only how the scripts learn the
// root; rpm itself would chroot.)
func TestMaintainerScriptsRPMArgs(t *testing.T) {
	t.Parallel()
	requireTool(t, "systemd-sysusers")
	requireTool(t, "systemd-tmpfiles")
	requireTool(t, "systemctl")
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown in the scratch root")
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, unitFile, filepath.Join(root, "usr/lib/systemd/system/tcu-agent.service"), 0o644)
	copyFile(t, sysusersFile, filepath.Join(root, "usr/lib/sysusers.d/tcu-agent.conf"), 0o644)
	copyFile(t, tmpfilesFile, filepath.Join(root, "usr/lib/tmpfiles.d/tcu-agent.conf"), 0o644)

	script := func(name, arg string) {
		t.Helper()
		cmd := exec.Command("sh", "scripts/"+name, arg)
		cmd.Env = append(os.Environ(), "DPKG_ROOT="+root)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, arg, err, out)
		}
	}

	script("postinstall.sh", "1") // first install
	uid, gid := lookupUser(t, root, "tcu-agent")
	checkDir(t, root, "/var/lib/tcu-agent", 0o700, uid, gid)
	if !exists(root, wantsLink) {
		t.Fatal("postinstall 1 (first install) did not enable the unit")
	}

	script("preremove.sh", "1") // upgrade: old package's %preun
	if !exists(root, wantsLink) {
		t.Fatal("preremove 1 (upgrade) disabled the unit")
	}
	if err := os.Remove(filepath.Join(root, wantsLink)); err != nil { // operator disables
		t.Fatal(err)
	}
	script("postinstall.sh", "2") // upgrade
	if exists(root, wantsLink) {
		t.Error("postinstall 2 (upgrade) re-enabled a unit the operator disabled")
	}

	script("postinstall.sh", "1")
	script("preremove.sh", "0") // removal
	if exists(root, wantsLink) {
		t.Error("preremove 0 (removal) left the unit enabled")
	}
	script("postremove.sh", "0")
}
