package packaging

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const copyrightFile = "copyright"

// copyrightParagraphs parses a DEP-5 file into paragraphs of fields
// (continuation lines appended to the field's value, one per line). It
// fails the test on a line that is neither a field nor a continuation.
func copyrightParagraphs(t *testing.T, text string) []map[string]string {
	t.Helper()
	var paras []map[string]string
	var cur map[string]string
	var last string
	for n, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		switch {
		case line == "":
			cur = nil
		case line[0] == ' ' || line[0] == '\t':
			if cur == nil || last == "" {
				t.Fatalf("%s:%d: continuation line outside a field", copyrightFile, n+1)
			}
			cur[last] += "\n" + line[1:]
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok || strings.ContainsAny(k, " \t") {
				t.Fatalf("%s:%d: not a field: %q", copyrightFile, n+1, line)
			}
			if cur == nil {
				cur = map[string]string{}
				paras = append(paras, cur)
			}
			if _, dup := cur[k]; dup {
				t.Fatalf("%s:%d: field %s twice in a paragraph", copyrightFile, n+1, k)
			}
			cur[k] = strings.TrimSpace(v)
			last = k
		}
	}
	return paras
}

// linkedModules lists the modules `go list -deps` says are linked into
// cmd/tcu-agent for each architecture the packages are built for.
func linkedModules(t *testing.T) []string {
	t.Helper()
	goTool := requireTool(t, "go")
	var mods []string
	for _, arch := range []string{"amd64", "arm64", "arm"} {
		cmd := exec.Command(goTool, "list", "-deps", "-f", "{{with .Module}}{{if not .Main}}{{.Path}}{{end}}{{end}}", "../cmd/tcu-agent")
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list (%s): %v", arch, err)
		}
		for m := range strings.FieldsSeq(string(out)) {
			if !slices.Contains(mods, m) {
				mods = append(mods, m)
			}
		}
	}
	slices.Sort(mods)
	return mods
}

// TestCopyrightListsLinkedModules checks packaging/copyright (shipped as
// /usr/share/doc/tcu-agent/copyright): valid DEP-5 structure, a Files
// stanza with a licence and its text for every module linked into the
// binary, no stanza for a module no longer linked, and the full text of
// every licence referenced by name only. Regenerate the file with
// scripts/gen-copyright.sh.
func TestCopyrightListsLinkedModules(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(copyrightFile)
	if err != nil {
		t.Fatal(err)
	}
	paras := copyrightParagraphs(t, string(b))
	if len(paras) == 0 || !strings.HasPrefix(paras[0]["Format"], "https://www.debian.org/doc/packaging-manuals/copyright-format/1.0") {
		t.Fatalf("first paragraph is not a DEP-5 header: %v", paras[0])
	}
	modules := map[string]string{} // module path -> License field
	standalone := map[string]bool{}
	for _, p := range paras[1:] {
		lic, ok := p["License"]
		if !ok {
			t.Errorf("paragraph without License: %v", p)
			continue
		}
		name, text, _ := strings.Cut(lic, "\n")
		files, isFiles := p["Files"]
		switch {
		case !isFiles:
			standalone[name] = true
		case strings.HasPrefix(files, "vendor/"):
			m := strings.TrimSuffix(strings.TrimPrefix(files, "vendor/"), "/*")
			if strings.TrimSpace(text) == "" {
				t.Errorf("module %s: licence %q without its text", m, name)
			}
			if p["Copyright"] == "" {
				t.Errorf("module %s: no Copyright", m)
			}
			modules[m] = name
		case files == "*":
			if text == "" {
				defer func() {
					if !standalone[name] {
						t.Errorf("the project's licence %q has no text in the file", name)
					}
				}()
			}
		}
	}
	linked := linkedModules(t)
	if len(linked) == 0 {
		t.Fatal("go list found no linked modules")
	}
	for _, m := range linked {
		if _, ok := modules[m]; !ok {
			t.Errorf("module %s is linked into tcu-agent but has no entry in packaging/copyright (run scripts/gen-copyright.sh)", m)
		}
	}
	for m := range modules {
		if !slices.Contains(linked, m) {
			t.Errorf("packaging/copyright lists %s, which is not linked any more (run scripts/gen-copyright.sh)", m)
		}
	}
}

// TestLicenseFile checks the project's LICENSE is the Apache License 2.0
// named in the README and in packaging/copyright.
func TestLicenseFile(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "Apache License") || !strings.Contains(string(b), "Version 2.0, January 2004") {
		t.Error("LICENSE is not the Apache License 2.0")
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "Apache License 2.0") {
		t.Error("README.md does not state the licence")
	}
}
