package profile

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestEveryKeyDocumented: every key of the [profile] section, its rules,
// profiles, signal overrides and battery guard appears in the shipped
// configs/tcu-agent.toml (the values are checked against the defaults by
// cmd/tcu-agent's TestSampleShowsDefaults).
func TestEveryKeyDocumented(t *testing.T) {
	text, err := os.ReadFile("../../configs/tcu-agent.toml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(text)
	start := strings.Index(s, "\n[profile]\n")
	end := strings.Index(s, "\n[mqtt]\n")
	if start < 0 || end < start {
		t.Fatal("no [profile] section before [mqtt]")
	}
	section := s[start:end]
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#\s+([a-z_]+) = `).FindAllStringSubmatch(section, -1) {
		documented[m[1]] = true
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[Config](), reflect.TypeFor[Battery](), reflect.TypeFor[Rule](), reflect.TypeFor[Settings](), reflect.TypeFor[Sampling]()} {
		for f := range typ.Fields() {
			key := f.Tag.Get("toml")
			switch key {
			case "rule", "settings", "battery", "signal": // tables, shown as headers
				continue
			}
			if !documented[key] {
				t.Errorf("%s.%s (%q) is not documented in configs/tcu-agent.toml [profile]", typ.Name(), f.Name, key)
			}
		}
	}
}
