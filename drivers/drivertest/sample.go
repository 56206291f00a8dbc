package drivertest

import (
	"bytes"
	"os"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/tcu-agent/tcu-agent/drivers"
)

// DecodeSample reads a driver's sample.toml (one [[driver]] table of the
// given kind), decodes its options strictly into d as the agent's config
// loader does (unknown keys are errors), and calls d.Init. It fails the
// test on any problem; the caller checks the decoded fields.
func DecodeSample(t *testing.T, path, kind string, d drivers.Driver) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Driver []map[string]any `toml:"driver"`
	}
	if err := toml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Driver) != 1 || doc.Driver[0]["kind"] != kind {
		t.Fatalf("%s has %v, want one [[driver]] of kind %s", path, doc.Driver, kind)
	}
	delete(doc.Driver[0], "name")
	delete(doc.Driver[0], "kind")
	opts, err := toml.Marshal(doc.Driver[0])
	if err != nil {
		t.Fatal(err)
	}
	dec := toml.NewDecoder(bytes.NewReader(opts))
	dec.DisallowUnknownFields()
	if err := dec.Decode(d); err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	if err := d.Init(); err != nil {
		t.Fatalf("Init() with %s = %v", path, err)
	}
}
