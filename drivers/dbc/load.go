package dbc

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// maxImportDepth bounds nested IMPORT statements.
const maxImportDepth = 8

// MaxFileSize is the largest DBC file Load reads (the biggest real files
// are a few MB).
const MaxFileSize = 64 << 20

// readFile reads a file of at most limit bytes.
func readFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return data, nil
}

// include is one CM_ "IMPORT name"; line.
type include struct {
	name string
	line int
}

// findImports returns opendbc's include statements, lines of the exact
// form CM_ "IMPORT other.dbc"; (surrounding blanks allowed).
func findImports(data []byte) []include {
	if !bytes.Contains(data, []byte("IMPORT")) {
		return nil
	}
	var out []include
	for i, line := range bytes.Split(data, []byte("\n")) {
		rest, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("CM_"))
		if !ok {
			continue
		}
		rest, ok = bytes.CutPrefix(bytes.TrimLeft(rest, " \t"), []byte(`"IMPORT `))
		if !ok {
			continue
		}
		rest, ok = bytes.CutSuffix(bytes.TrimRight(rest, " \t"), []byte(";"))
		if !ok {
			continue
		}
		rest, ok = bytes.CutSuffix(bytes.TrimRight(rest, " \t"), []byte(`"`))
		name := string(bytes.TrimSpace(rest))
		if ok && name != "" && !strings.ContainsAny(name, "\" \t") {
			out = append(out, include{name: name, line: i + 1})
		}
	}
	return out
}

// Load reads and parses the DBC file at path. Files it includes with
// opendbc's CM_ "IMPORT name.dbc"; convention (relative to the including
// file) are parsed first, each once; an include that cannot be read is a
// Warning. See Parse for the tolerance rules.
func Load(path string) (*Database, []Warning, error) {
	data, err := readFile(path, MaxFileSize)
	if err != nil {
		return nil, nil, fmt.Errorf("load dbc: %w", err)
	}
	var srcs []source
	var warns []Warning
	seen := map[string]bool{filepath.Clean(path): true}
	collectImports(path, data, seen, &srcs, &warns, 0)
	srcs = append(srcs, source{file: path, data: data})
	return parseSources(srcs, warns)
}

// collectImports appends the sources path imports (depth first, each file
// once) to srcs.
func collectImports(path string, data []byte, seen map[string]bool, srcs *[]source, warns *[]Warning, depth int) {
	for _, inc := range findImports(data) {
		name, line := inc.name, inc.line
		ipath := filepath.Join(filepath.Dir(path), filepath.FromSlash(name))
		if seen[filepath.Clean(ipath)] {
			continue
		}
		seen[filepath.Clean(ipath)] = true
		if depth >= maxImportDepth {
			*warns = append(*warns, Warning{File: path, Line: line, Msg: "skipped IMPORT " + name + ": nested too deeply"})
			continue
		}
		idata, err := readFile(ipath, MaxFileSize)
		if err != nil {
			*warns = append(*warns, Warning{File: path, Line: line, Msg: fmt.Sprintf("skipped IMPORT %s: %v", name, err)})
			continue
		}
		collectImports(ipath, idata, seen, srcs, warns, depth+1)
		*srcs = append(*srcs, source{file: ipath, data: idata})
	}
}
