package candump

import (
	"bytes"
	"os"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/tcu-agent/tcu-agent/drivers/drivertest"
)

// TestSampleConfig decodes sample.toml strictly into the driver, as the
// agent does, and Inits it.
func TestSampleConfig(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("sample.toml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Driver []map[string]any `toml:"driver"`
	}
	if err := toml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Driver) != 1 || doc.Driver[0]["kind"] != Kind {
		t.Fatalf("sample.toml has %v, want one [[driver]] of kind %s", doc.Driver, Kind)
	}
	delete(doc.Driver[0], "name")
	delete(doc.Driver[0], "kind")
	opts, err := toml.Marshal(doc.Driver[0])
	if err != nil {
		t.Fatal(err)
	}
	d := New(drivertest.Params(t))
	dec := toml.NewDecoder(bytes.NewReader(opts))
	dec.DisallowUnknownFields()
	if err := dec.Decode(d); err != nil {
		t.Fatalf("decode sample.toml: %v", err)
	}
	if err := d.Init(); err != nil {
		t.Fatalf("Init() with sample.toml = %v", err)
	}
	if len(d.Signals) != 2 || d.Speed != 1 || !d.Loop {
		t.Errorf("decoded signals %+v, want the 2 of sample.toml", d.Signals)
	}
}
