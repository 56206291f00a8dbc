package dbc

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// maxImportDepth bounds nested IMPORT statements.
const maxImportDepth = 8

// importRe matches opendbc's include convention: CM_ "IMPORT other.dbc";
var importRe = regexp.MustCompile(`(?m)^[ \t]*CM_[ \t]+"IMPORT[ \t]+([^"\s]+)[ \t]*"[ \t]*;`)

// Load reads and parses the DBC file at path. Files it includes with
// opendbc's CM_ "IMPORT name.dbc"; convention (relative to the including
// file) are parsed first, each once; an include that cannot be read is a
// Warning. See Parse for the tolerance rules.
func Load(path string) (*Database, []Warning, error) {
	data, err := os.ReadFile(path)
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
	for _, loc := range importRe.FindAllSubmatchIndex(data, -1) {
		name := string(data[loc[2]:loc[3]])
		line := 1 + strings.Count(string(data[:loc[0]]), "\n")
		ipath := filepath.Join(filepath.Dir(path), filepath.FromSlash(name))
		if seen[filepath.Clean(ipath)] {
			continue
		}
		seen[filepath.Clean(ipath)] = true
		if depth >= maxImportDepth {
			*warns = append(*warns, Warning{File: path, Line: line, Msg: "skipped IMPORT " + name + ": nested too deeply"})
			continue
		}
		idata, err := os.ReadFile(ipath)
		if err != nil {
			*warns = append(*warns, Warning{File: path, Line: line, Msg: fmt.Sprintf("skipped IMPORT %s: %v", name, err)})
			continue
		}
		collectImports(ipath, idata, seen, srcs, warns, depth+1)
		*srcs = append(*srcs, source{file: ipath, data: idata})
	}
}
