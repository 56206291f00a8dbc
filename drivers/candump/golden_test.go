package candump

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pelletier/go-toml/v2"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/drivertest"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*/want.jsonl")

// goldenSample is one line of want.jsonl.
type goldenSample struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Label string  `json:"label,omitempty"`
	Time  string  `json:"time"`
}

// TestGolden replays each testdata/golden/<case>/input.candump with the
// case's config.toml (decoded strictly, as the agent does) and compares
// the samples with want.jsonl. Regenerate with -update.
func TestGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/golden/*")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, dir := range cases {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			got := replayCase(t, dir)
			wantPath := filepath.Join(dir, "want.jsonl")
			if *update {
				var buf bytes.Buffer
				enc := json.NewEncoder(&buf)
				for _, s := range got {
					_ = enc.Encode(s)
				}
				if err := os.WriteFile(wantPath, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			b, err := os.ReadFile(wantPath)
			if err != nil {
				t.Fatal(err)
			}
			var want []goldenSample
			dec := json.NewDecoder(bytes.NewReader(b))
			for dec.More() {
				var s goldenSample
				if err := dec.Decode(&s); err != nil {
					t.Fatal(err)
				}
				want = append(want, s)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("samples differ from %s (-want +got; -update rewrites):\n%s", wantPath, diff)
			}
		})
	}
}

func replayCase(t *testing.T, dir string) []goldenSample {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Driver []map[string]any `toml:"driver"`
	}
	if err := toml.Unmarshal(b, &doc); err != nil || len(doc.Driver) != 1 {
		t.Fatalf("config.toml: want one [[driver]]: %v", err)
	}
	delete(doc.Driver[0], "name")
	delete(doc.Driver[0], "kind")
	opts, err := toml.Marshal(doc.Driver[0])
	if err != nil {
		t.Fatal(err)
	}
	p := drivertest.Params(t)
	p.ConfigDir = dir
	d := New(p)
	tdec := toml.NewDecoder(bytes.NewReader(opts))
	tdec.DisallowUnknownFields()
	if err := tdec.Decode(d); err != nil {
		t.Fatal(err)
	}
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	sink := &drivertest.Sink{}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx, sink) }()
	lines := bytes.Count(mustRead(t, filepath.Join(dir, d.File)), []byte("\n"))
	deadline := time.Now().Add(20 * time.Second)
	for d.Stats().Frames < uint64(lines) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	var out []goldenSample
	for _, s := range sink.Samples() {
		out = append(out, golden(s))
	}
	return out
}

func golden(s drivers.Sample) goldenSample {
	return goldenSample{Name: s.Name, Value: s.Value, Label: s.Label, Time: s.Time.UTC().Format(time.RFC3339Nano)}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
