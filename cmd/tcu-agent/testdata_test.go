package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestNoTestReadsOutsideRepo keeps a clone of the repository
// self-sufficient: no relative path literal in any Go file may climb out of
// the module (e.g. "../../../shared/..."), and no Go file may name the
// build machine's shared directories. Test data lives in testdata/ with its
// licence (testdata/dbc/README.md).
func TestNoTestReadsOutsideRepo(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	self, err := filepath.Abs("testdata_test.go") // its examples would match
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "build" || name == "dist") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || path == self {
			return nil
		}
		checked++
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if s, ok := joinedLiterals(n); ok && escapes(root, filepath.Dir(path), s) {
				t.Errorf("%s: filepath.Join to %q reaches outside the repository; copy the data into testdata/", fset.Position(n.Pos()), s)
			}
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			if escapes(root, filepath.Dir(path), s) || strings.Contains(s, "/work/shared") {
				t.Errorf("%s: %q reaches outside the repository; copy the data into testdata/", fset.Position(lit.Pos()), s)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("checked only %d Go files under %s", checked, root)
	}
}

// joinedLiterals returns the path that a filepath.Join or path.Join call
// builds from its leading string-literal arguments ("..", "..", "shared").
func joinedLiterals(n ast.Node) (string, bool) {
	call, ok := n.(*ast.CallExpr)
	if !ok {
		return "", false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Join" {
		return "", false
	}
	if pkg, ok := sel.X.(*ast.Ident); !ok || (pkg.Name != "filepath" && pkg.Name != "path") {
		return "", false
	}
	var parts []string
	for _, a := range call.Args {
		lit, ok := a.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			break
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil {
			break
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "", false
	}
	return filepath.ToSlash(filepath.Join(parts...)), true
}

// escapes reports whether s is a relative path starting with ".." that,
// taken from dir, leads outside root.
func escapes(root, dir, s string) bool {
	if !strings.HasPrefix(s, "../") && s != ".." {
		return false
	}
	rel, err := filepath.Rel(root, filepath.Join(dir, s))
	return err != nil || rel == ".." || strings.HasPrefix(rel, "../")
}

func TestEscapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		dir, s string
		want   bool
	}{
		{"/r/cmd/tcu-agent", "../../testdata/dbc", false},
		{"/r/cmd/tcu-agent", "../../../shared/testdata/dbc", true},
		{"/r/drivers/dbc", "../..", false},
		{"/r/drivers/dbc", "../../..", true},
		{"/r/drivers/dbc", "testdata/x", false},
		{"/r/drivers/dbc", "/etc/passwd", false},
	}
	for _, tt := range tests {
		if got := escapes("/r", tt.dir, tt.s); got != tt.want {
			t.Errorf("escapes(/r, %s, %q) = %v, want %v", tt.dir, tt.s, got, tt.want)
		}
	}
}
