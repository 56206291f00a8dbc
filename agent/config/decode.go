package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/tcu-agent/tcu-agent/drivers"
)

// decoder accumulates the problems of one file.
type decoder struct {
	file string
	dir  string
	data []byte
	idx  keyIndex
	errs []error
	used map[string]int // loose lookups already assigned, per pattern
}

func (d *decoder) errorf(path, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: d.idx.lookup(path), Key: path, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) syntaxError(err error) error {
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		return &Error{File: d.file, Line: line, Msg: strings.TrimPrefix(de.Error(), "toml: ")}
	}
	return &Error{File: d.file, Msg: err.Error()}
}

// decodeSection decodes the table raw (found at path) strictly into dst.
func (d *decoder) decodeSection(path string, raw any, dst any) {
	m, ok := raw.(map[string]any)
	if !ok {
		d.errorf(path, "%q must be a table", path)
		return
	}
	b, err := toml.Marshal(m)
	if err != nil {
		d.errorf(path, "cannot re-encode section: %v", err)
		return
	}
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		d.translate(path, err)
	}
}

// translate maps a decode error on a re-encoded section back to file:line.
func (d *decoder) translate(prefix string, err error) {
	var sm *toml.StrictMissingError
	if errors.As(err, &sm) {
		for _, e := range sm.Errors {
			key := strings.Join(e.Key(), ".")
			full := join(prefix, key)
			d.errs = append(d.errs, &Error{File: d.file, Line: d.looseLine(prefix, e.Key()), Key: full,
				Msg: fmt.Sprintf("unknown key %q in [%s] (typo, or not supported by this version)", e.Key()[len(e.Key())-1], prefix)})
		}
		return
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		key := strings.Join(de.Key(), ".")
		d.errs = append(d.errs, &Error{File: d.file, Line: d.looseLine(prefix, de.Key()), Key: join(prefix, key),
			Msg: strings.TrimPrefix(de.Error(), "toml: ")})
		return
	}
	msg := strings.TrimPrefix(err.Error(), "toml: ")
	path := prefix
	if m := fieldRe.FindStringSubmatch(msg); m != nil {
		path = join(prefix, m[1])
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: d.idx.lookup(path), Key: path, Msg: msg})
}

// fieldRe extracts the key go-toml names in value errors ("... field x.y ...").
var fieldRe = regexp.MustCompile(`field ([A-Za-z0-9_.]+)`)

// looseLine finds the line of key parts below prefix, ignoring array
// indices the decoder does not report. Repeated lookups of the same pattern
// return successive matches, so two bad entries get two lines.
func (d *decoder) looseLine(prefix string, parts []string) int {
	want := join(stripIndices(prefix), strings.Join(parts, "."))
	var lines []int
	for k, l := range d.idx {
		if strings.HasPrefix(k, prefix) && stripIndices(k) == want {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return d.idx.lookup(prefix)
	}
	sort.Ints(lines)
	if d.used == nil {
		d.used = map[string]int{}
	}
	i := d.used[prefix+"|"+want]
	d.used[prefix+"|"+want] = i + 1
	return lines[min(i, len(lines)-1)]
}

var indexRe = regexp.MustCompile(`\[\d+\]`)

func stripIndices(s string) string { return indexRe.ReplaceAllString(s, "") }

// decodeDrivers builds every [[driver]] through the drivers registry.
func (d *decoder) decodeDrivers(raw any) []Driver {
	list, ok := raw.([]any)
	if !ok {
		d.errorf("driver", "driver must be an array of tables: [[driver]]")
		return nil
	}
	var out []Driver
	seen := map[string]bool{}
	for i, item := range list {
		path := fmt.Sprintf("driver[%d]", i)
		m, ok := item.(map[string]any)
		if !ok {
			d.errorf(path, "driver entry must be a table")
			continue
		}
		name, _ := m["name"].(string)
		kind, _ := m["kind"].(string)
		switch {
		case name == "":
			d.errorf(path, "[[driver]] needs name = \"...\"")
			continue
		case seen[name]:
			d.errorf(path+".name", "duplicate driver name %q", name)
			continue
		case kind == "":
			d.errorf(path, "[[driver]] %q needs kind = \"...\" (one of %s)", name, strings.Join(drivers.Kinds(), ", "))
			continue
		}
		seen[name] = true
		f, ok := drivers.Lookup(kind)
		if !ok {
			d.errorf(path+".kind", "unknown driver kind %q (this build has: %s)", kind, strings.Join(drivers.Kinds(), ", "))
			continue
		}
		opts := make(map[string]any, len(m))
		for k, v := range m {
			if k != "name" && k != "kind" {
				opts[k] = v
			}
		}
		drv := f(drivers.Params{Name: name, Logger: slog.New(slog.DiscardHandler), ConfigDir: d.dir})
		before := len(d.errs)
		d.decodeSection(path, opts, drv)
		if len(d.errs) == before {
			if err := drv.Init(); err != nil {
				d.errorf(path, "driver %q: %v", name, err)
			}
		}
		out = append(out, Driver{Name: name, Kind: kind, Line: d.idx.lookup(path), Driver: drv, Table: m})
	}
	return out
}
