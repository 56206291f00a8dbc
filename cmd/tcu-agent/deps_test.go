package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/tcu-agent/tcu-agent"

type goPackage struct {
	ImportPath string
	Doc        string
	Name       string
	Deps       []string
	Imports    []string
}

// listPackages runs `go list -json` over the module.
func listPackages(t *testing.T, args ...string) []goPackage {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	cmd.Dir = "../.."
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []goPackage
	dec := json.NewDecoder(&out)
	for dec.More() {
		var p goPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// TestLayering enforces docs/architecture.md: drivers/, buffer/ and
// provisioning/ never depend on agent/ (nor buffer and provisioning on
// drivers, nor drivers on buffer or provisioning); the top-level internal/
// packages are leaves that depend on nothing of this module; the agent's
// telemetry, command and uplink pipelines never depend on each other.
func TestLayering(t *testing.T) {
	t.Parallel()
	rules := []struct {
		area      string
		forbidden []string
	}{
		{"drivers", []string{"agent", "buffer", "provisioning"}},
		{"buffer", []string{"agent", "drivers", "provisioning"}},
		{"provisioning", []string{"agent", "drivers", "buffer"}},
		{"agent/telemetry", []string{"agent/command", "agent/uplink"}},
		{"agent/command", []string{"agent/telemetry", "agent/uplink"}},
		{"agent/uplink", []string{"agent/telemetry", "agent/command"}},
	}
	for _, p := range listPackages(t, "./...") {
		if under(p.ImportPath, module+"/internal") {
			for _, d := range p.Deps {
				if under(d, module) && !under(d, module+"/internal") {
					t.Errorf("%s depends on %s (rule: internal/ packages import nothing of this module)", p.ImportPath, d)
				}
			}
		}
		for _, r := range rules {
			if !under(p.ImportPath, module+"/"+r.area) {
				continue
			}
			for _, d := range p.Deps {
				for _, f := range r.forbidden {
					if under(d, module+"/"+f) {
						t.Errorf("%s depends on %s (rule: %s/ never imports %s/)", p.ImportPath, d, r.area, f)
					}
				}
			}
		}
	}
}

// TestAgentBinaryDeps keeps test helpers, the dev cloud and the standard
// "testing" package out of the shipped binary.
func TestAgentBinaryDeps(t *testing.T) {
	t.Parallel()
	for _, p := range listPackages(t, "-deps", "./cmd/tcu-agent") {
		d := p.ImportPath
		switch {
		case strings.HasPrefix(d, "github.com/stretchr/testify"):
			t.Errorf("tcu-agent links %s", d)
		case strings.HasPrefix(d, module) && (strings.HasSuffix(d, "test") || strings.Contains(d, "/cmd/tcu-devcloud") || strings.Contains(d, "/cmd/tcu-sim")):
			t.Errorf("tcu-agent links test or dev-only package %s", d)
		}
		for _, imp := range p.Imports {
			if imp == "testing" {
				t.Errorf("tcu-agent links testing via %s", d)
			}
		}
	}
}

// TestPackageDocs requires a package doc comment on every package.
func TestPackageDocs(t *testing.T) {
	t.Parallel()
	for _, p := range listPackages(t, "./...") {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("%s has no package doc comment", p.ImportPath)
		}
	}
}

func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}
