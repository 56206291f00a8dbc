package main

import (
	"os"
	"strings"
	"testing"
)

// TestArchitectureDocListsEveryPackage keeps docs/architecture.md's
// package table complete: every package of the module must appear in it
// as `path` (relative to the module root).
func TestArchitectureDocListsEveryPackage(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	pkgs := listPackages(t, "./...")
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	for _, p := range pkgs {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		if rel == "" {
			rel = "."
		}
		if !strings.Contains(string(doc), "`"+rel+"`") {
			t.Errorf("docs/architecture.md does not list package `%s` (%s)", rel, firstSentence(p.Doc))
		}
	}
}

func firstSentence(doc string) string {
	if i := strings.Index(doc, ". "); i >= 0 {
		return doc[:i+1]
	}
	return doc
}
