package config

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// keyIndex maps a key path to the 1-based line where it is defined.
// Array-of-tables elements are addressed by index: "driver[1].signal[0].name".
type keyIndex map[string]int

// indexKeys parses data with go-toml's low-level parser and records the line
// of every key, table header and array-table header. Parse errors are left
// to the decoder, which reports them with positions.
func indexKeys(data []byte) keyIndex {
	idx := keyIndex{}
	var p unstable.Parser
	p.Reset(data)
	counts := map[string]int{} // array-table path -> elements seen
	var table string           // current table path
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			parts := keyParts(e.Key())
			path := resolveArrays(parts, counts)
			if e.Kind == unstable.ArrayTable {
				n := counts[path]
				counts[path] = n + 1
				path = fmt.Sprintf("%s[%d]", path, n)
			}
			table = path
			idx.add(path, lineOf(data, e.Key()))
		case unstable.KeyValue:
			idx.addKeyValue(data, table, e)
		}
	}
	return idx
}

// resolveArrays rewrites a header path so that parts naming an array of
// tables point at its current (last) element, as TOML defines.
func resolveArrays(parts []string, counts map[string]int) string {
	var b strings.Builder
	for i, part := range parts {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(part)
		if i < len(parts)-1 {
			if n, ok := counts[b.String()]; ok && n > 0 {
				fmt.Fprintf(&b, "[%d]", n-1)
			}
		}
	}
	return b.String()
}

func (idx keyIndex) addKeyValue(data []byte, prefix string, kv *unstable.Node) {
	path := join(prefix, strings.Join(keyParts(kv.Key()), "."))
	idx.add(path, lineOf(data, kv.Key()))
	if v := kv.Value(); v.Kind == unstable.InlineTable {
		it := v.Children()
		for it.Next() {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				idx.addKeyValue(data, path, c)
			}
		}
	}
}

func (idx keyIndex) add(path string, line int) {
	if _, ok := idx[path]; !ok && line > 0 {
		idx[path] = line
	}
}

// lookup returns the line of path or of its closest defined ancestor.
func (idx keyIndex) lookup(path string) int {
	for path != "" {
		if l, ok := idx[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

func keyParts(it unstable.Iterator) []string {
	var parts []string
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

func lineOf(data []byte, it unstable.Iterator) int {
	if !it.Next() {
		return 0
	}
	r := it.Node().Raw
	if int(r.Offset) > len(data) || (r.Offset == 0 && r.Length == 0) {
		return 0
	}
	return bytes.Count(data[:r.Offset], []byte{'\n'}) + 1
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}
