package packaging

import (
	"compress/gzip"
	"debug/elf"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// pkgArch is one architecture the packages are built for.
type pkgArch struct {
	deb, rpm string
	machine  elf.Machine
}

var pkgArches = []pkgArch{
	{deb: "amd64", rpm: "x86_64", machine: elf.EM_X86_64},
	{deb: "arm64", rpm: "aarch64", machine: elf.EM_AARCH64},
	{deb: "armhf", rpm: "armv7hl", machine: elf.EM_ARM},
}

// wantFiles are the regular files every package installs.
var wantFiles = []string{
	"/etc/tcu-agent/tcu-agent.toml",
	"/etc/tcu-agent/vehicle.dbc",
	"/usr/bin/tcu-agent",
	"/usr/lib/systemd/system/tcu-agent.service",
	"/usr/lib/sysusers.d/tcu-agent.conf",
	"/usr/lib/tcu-agent/can-setup",
	"/usr/lib/tcu-agent/vcan-setup",
	"/usr/lib/tmpfiles.d/tcu-agent.conf",
	"/usr/share/bash-completion/completions/tcu-agent",
	"/usr/share/doc/tcu-agent/copyright",
	"/usr/share/doc/tcu-agent/examples/80-can0.network",
	"/usr/share/doc/tcu-agent/operations.md",
	"/usr/share/man/man1/tcu-agent.1.gz",
}

// wantConfig are the files marked as configuration (kept on upgrade).
var wantConfig = []string{"/etc/tcu-agent/tcu-agent.toml", "/etc/tcu-agent/vehicle.dbc"}

// sameAsSource maps installed files to the repository file they must equal.
var sameAsSource = map[string]string{
	"usr/lib/systemd/system/tcu-agent.service": unitFile,
	"usr/lib/sysusers.d/tcu-agent.conf":        sysusersFile,
	"usr/lib/tmpfiles.d/tcu-agent.conf":        tmpfilesFile,
	"etc/tcu-agent/tcu-agent.toml":             "../configs/tcu-agent.toml",
	"usr/share/doc/tcu-agent/operations.md":    "../docs/operations.md",
	"usr/lib/tcu-agent/can-setup":              "../scripts/can-setup.sh",
	"usr/share/doc/tcu-agent/copyright":        "copyright",
	"usr/lib/tcu-agent/vcan-setup":             "../scripts/vcan-setup.sh",
}

// findPackage returns the newest package in $TCU_PACKAGE_DIR matching glob,
// or skips (fails when TCU_REQUIRE_PACKAGES is set).
func findPackage(t *testing.T, glob string) string {
	t.Helper()
	dir := os.Getenv("TCU_PACKAGE_DIR")
	if dir == "" {
		// Not ../dist by default: packages built earlier may be stale.
		t.Skip("TCU_PACKAGE_DIR not set; run make package-test")
	}
	matches, _ := filepath.Glob(filepath.Join(dir, glob))
	if len(matches) == 0 {
		if os.Getenv("TCU_REQUIRE_PACKAGES") != "" {
			t.Fatalf("no %s in %s (run make package)", glob, dir)
		}
		t.Skipf("no %s in %s; run make package first", glob, dir)
	}
	sort.Slice(matches, func(i, j int) bool { return mtime(matches[i]) > mtime(matches[j]) })
	return matches[0]
}

func mtime(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.ModTime().UnixNano()
}

// TestDebContents unpacks each .deb and checks its metadata, file list,
// conffiles, maintainer scripts and binary.
func TestDebContents(t *testing.T) {
	t.Parallel()
	dpkgDeb := requireTool(t, "dpkg-deb")
	for _, a := range pkgArches {
		t.Run(a.deb, func(t *testing.T) {
			t.Parallel()
			deb := findPackage(t, "tcu-agent_*_"+a.deb+".deb")
			if out, _, err := run(t, dpkgDeb, "-f", deb, "Package", "Architecture"); err != nil ||
				out != "Package: tcu-agent\nArchitecture: "+a.deb+"\n" {
				t.Errorf("control fields = %q, %v", out, err)
			}
			list, stderr, err := run(t, dpkgDeb, "-c", deb)
			if err != nil {
				t.Fatalf("dpkg-deb -c: %v\n%s", err, stderr)
			}
			checkFileList(t, debFiles(list))

			ctrl := t.TempDir()
			if _, stderr, err := run(t, dpkgDeb, "-e", deb, ctrl); err != nil {
				t.Fatalf("dpkg-deb -e: %v\n%s", err, stderr)
			}
			conffiles, _ := os.ReadFile(filepath.Join(ctrl, "conffiles"))
			if got := strings.Fields(string(conffiles)); !slices.Equal(got, wantConfig) {
				t.Errorf("conffiles = %q, want %q", got, wantConfig)
			}
			for script, src := range map[string]string{"postinst": "scripts/postinstall.sh", "prerm": "scripts/preremove.sh", "postrm": "scripts/postremove.sh"} {
				sameFile(t, filepath.Join(ctrl, script), src)
				if fi, err := os.Stat(filepath.Join(ctrl, script)); err != nil || fi.Mode().Perm()&0o111 == 0 {
					t.Errorf("%s missing or not executable: %v", script, err)
				}
			}

			root := t.TempDir()
			if _, stderr, err := run(t, dpkgDeb, "-x", deb, root); err != nil {
				t.Fatalf("dpkg-deb -x: %v\n%s", err, stderr)
			}
			for installed, src := range sameAsSource {
				sameFile(t, filepath.Join(root, installed), src)
			}
			checkBinary(t, filepath.Join(root, "usr/bin/tcu-agent"), a.machine)
			checkManAndCompletion(t, root)
		})
	}
}

// TestRPMContents checks each .rpm's architecture, files, config files and
// scripts.
func TestRPMContents(t *testing.T) {
	t.Parallel()
	rpm := requireTool(t, "rpm")
	for _, a := range pkgArches {
		t.Run(a.rpm, func(t *testing.T) {
			t.Parallel()
			pkg := findPackage(t, "tcu-agent-*."+a.rpm+".rpm")
			q := func(args ...string) string {
				out, stderr, err := run(t, rpm, append([]string{"-qp", "--nosignature"}, append(args, pkg)...)...)
				if err != nil {
					t.Fatalf("rpm -qp %v: %v\n%s", args, err, stderr)
				}
				return out
			}
			if got := q("--qf", "%{NAME} %{ARCH}"); got != "tcu-agent "+a.rpm {
				t.Errorf("name/arch = %q, want tcu-agent %s", got, a.rpm)
			}
			var files []string
			for line := range strings.Lines(q("--qf", "[%{FILEMODES:perms} %{FILENAMES}\n]")) {
				if perms, name, ok := strings.Cut(strings.TrimSpace(line), " "); ok && strings.HasPrefix(perms, "-") {
					files = append(files, name)
				}
			}
			checkFileList(t, files)
			if got := strings.Fields(q("--configfiles")); !slices.Equal(got, wantConfig) {
				t.Errorf("config files = %q, want %q", got, wantConfig)
			}
			scripts := q("--scripts")
			for _, want := range []string{"postinstall scriptlet", "systemd-sysusers", "preuninstall scriptlet", "postuninstall scriptlet"} {
				if !strings.Contains(scripts, want) {
					t.Errorf("rpm scripts lack %q:\n%s", want, scripts)
				}
			}
		})
	}
}

// debFiles extracts the regular-file paths from `dpkg-deb -c` output.
func debFiles(list string) []string {
	var files []string
	for line := range strings.Lines(list) {
		f := strings.Fields(line)
		if len(f) < 6 || f[0][0] != '-' {
			continue
		}
		files = append(files, strings.TrimPrefix(f[len(f)-1], "."))
	}
	return files
}

func checkFileList(t *testing.T, got []string) {
	t.Helper()
	sort.Strings(got)
	if !slices.Equal(got, wantFiles) {
		t.Errorf("files = %q\nwant    %q", got, wantFiles)
	}
}

func sameFile(t *testing.T, got, want string) {
	t.Helper()
	g, err := os.ReadFile(got)
	if err != nil {
		t.Errorf("read %s: %v", got, err)
		return
	}
	w, err := os.ReadFile(want)
	if err != nil {
		t.Fatalf("read %s: %v", want, err)
	}
	if string(g) != string(w) {
		t.Errorf("%s differs from %s", got, want)
	}
}

// checkBinary checks that the packaged binary is for machine, static (no
// interpreter) and stripped (no symbol table).
func checkBinary(t *testing.T, path string, machine elf.Machine) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("binary: %v", err)
	}
	defer f.Close()
	if f.Machine != machine {
		t.Errorf("binary is for %v, want %v", f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("binary is dynamically linked (has PT_INTERP)")
		}
	}
	if f.Section(".symtab") != nil {
		t.Error("binary is not stripped (has .symtab)")
	}
}

// checkManAndCompletion checks the generated man page (gzip, roff, every
// verb of the CLI) and bash completion in an unpacked package.
func checkManAndCompletion(t *testing.T, root string) {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "usr/share/man/man1/tcu-agent.1.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("man page: %v", err)
	}
	man, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("man page: %v", err)
	}
	comp, err := os.ReadFile(filepath.Join(root, "usr/share/bash-completion/completions/tcu-agent"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(man), ".TH TCU-AGENT 1") {
		t.Errorf("man page does not start with .TH: %.40q", man)
	}
	for _, verb := range []string{"run", "check\\-config", "status", "provision", "log\\-level", "version"} {
		if !strings.Contains(string(man), `.SS "tcu\-agent `+verb) {
			t.Errorf("man page lacks verb %s", verb)
		}
	}
	if !strings.Contains(string(comp), "complete -F _tcu_agent tcu-agent") {
		t.Error("bash completion does not register itself")
	}
}
