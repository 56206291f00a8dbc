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
	script("postinstall.sh", "1") // install after erase: a first install
	if !exists(root, wantsLink) {
		t.Error("postinstall 1 after an erase did not enable the unit")
	}
}

// TestMaintainerScriptsDebArgs runs the maintainer scripts with dpkg's
// arguments for each path through them, the way dpkg calls them, and
// checks enablement: remove then install (postinst "configure <old>", as
// an upgrade) restores the state the unit had when removed; an upgrade
// keeps the operator's choice; purge forgets the remove marker.
func TestMaintainerScriptsDebArgs(t *testing.T) {
	t.Parallel()
	requireTool(t, "systemd-sysusers")
	requireTool(t, "systemd-tmpfiles")
	requireTool(t, "systemctl")
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown in the scratch root")
	}
	type step struct {
		script, arg1, arg2 string
		disable            bool // the operator disables the unit before the step
		wantEnabled        bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"install", []step{{script: "postinstall.sh", arg1: "configure", wantEnabled: true}}},
		{"upgrade keeps enabled", []step{
			{script: "postinstall.sh", arg1: "configure", wantEnabled: true},
			{script: "preremove.sh", arg1: "upgrade", arg2: "2.0", wantEnabled: true},
			{script: "postinstall.sh", arg1: "configure", arg2: "1.0", wantEnabled: true},
		}},
		{"upgrade keeps disabled", []step{
			{script: "postinstall.sh", arg1: "configure", wantEnabled: true},
			{script: "preremove.sh", arg1: "upgrade", arg2: "2.0", disable: true},
			{script: "postinstall.sh", arg1: "configure", arg2: "1.0"},
		}},
		{"remove then install", []step{
			{script: "postinstall.sh", arg1: "configure", wantEnabled: true},
			{script: "preremove.sh", arg1: "remove"},
			{script: "postremove.sh", arg1: "remove"},
			{script: "postinstall.sh", arg1: "configure", arg2: "1.0", wantEnabled: true},
			{script: "preremove.sh", arg1: "upgrade", arg2: "2.0", disable: true}, // marker consumed:
			{script: "postinstall.sh", arg1: "configure", arg2: "1.0"},            // a plain upgrade now
		}},
		{"disabled, remove then install", []step{
			{script: "postinstall.sh", arg1: "configure", wantEnabled: true},
			{script: "preremove.sh", arg1: "remove", disable: true},
			{script: "postinstall.sh", arg1: "configure", arg2: "1.0"},
		}},
		{"remove, purge, install", []step{
			{script: "postinstall.sh", arg1: "configure", wantEnabled: true},
			{script: "preremove.sh", arg1: "remove", disable: true},
			{script: "postremove.sh", arg1: "remove"},
			{script: "postremove.sh", arg1: "purge"},
			{script: "postinstall.sh", arg1: "configure", wantEnabled: true},
		}},
		{"abort-remove", []step{
			{script: "postinstall.sh", arg1: "configure", wantEnabled: true},
			{script: "preremove.sh", arg1: "remove"},
			{script: "postinstall.sh", arg1: "abort-remove"},
			{script: "preremove.sh", arg1: "upgrade", arg2: "2.0"}, // no marker left
			{script: "postinstall.sh", arg1: "configure", arg2: "1.0"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			copyFile(t, unitFile, filepath.Join(root, "usr/lib/systemd/system/tcu-agent.service"), 0o644)
			copyFile(t, sysusersFile, filepath.Join(root, "usr/lib/sysusers.d/tcu-agent.conf"), 0o644)
			copyFile(t, tmpfilesFile, filepath.Join(root, "usr/lib/tmpfiles.d/tcu-agent.conf"), 0o644)
			for i, s := range tt.steps {
				if s.disable {
					if err := os.Remove(filepath.Join(root, wantsLink)); err != nil {
						t.Fatalf("step %d: disable: %v", i, err)
					}
				}
				args := []string{"scripts/" + s.script, s.arg1}
				if s.arg2 != "" {
					args = append(args, s.arg2)
				}
				cmd := exec.Command("sh", args...)
				cmd.Env = append(os.Environ(), "DPKG_ROOT="+root)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("step %d %v: %v\n%s", i, args, err, out)
				}
				if got := exists(root, wantsLink); got != s.wantEnabled {
					t.Fatalf("step %d %v: enabled = %v, want %v", i, args, got, s.wantEnabled)
				}
			}
			if last := tt.steps[len(tt.steps)-1]; last.script == "postinstall.sh" && exists(root, "var/lib/tcu-agent-package") {
				t.Error("postinst left the remove marker")
			}
		})
	}
}
