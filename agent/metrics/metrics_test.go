package metrics

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// agentRegistry registers the kind of families the agent exports.
func agentRegistry() *Registry {
	r := New()
	frames := r.Counter("tcu_can_frames_total", "CAN frames received.", "bus")
	frames.Add(1500, "can0")
	frames.With("can1").Inc()
	r.Counter("tcu_decode_errors_total", "Frames that failed DBC decoding.", "bus").Inc("can0")
	r.Counter("tcu_command_outcomes_total", "Remote commands by final status.", "name", "status").Inc("door.lock", "SUCCEEDED")
	q := r.Gauge("tcu_queue_records", "Unsent records per class.", "class")
	q.Set(42, "telemetry")
	q.Set(3, "event")
	q.Add(-1, "event")
	r.GaugeFunc("tcu_oldest_unsent_seconds", "Age of the oldest unsent record.", func() float64 { return 12.5 })
	r.CounterFunc("tcu_mqtt_reconnects_total", "MQTT reconnects.", func() float64 { return 7 })
	r.CollectFunc("tcu_queue_bytes", "Unsent bytes per class.", TypeGauge, []string{"class"}, func(emit EmitFunc) {
		emit(2048, "telemetry")
		emit(128, "event")
	})
	r.Gauge("tcu_odd_values", "Help with \\ backslash\nand newline.", "v").Set(math.Inf(1), "quote\" back\\ nl\n")
	return r
}

// parse parses Prometheus text with the Prometheus library's own parser.
func parse(t *testing.T, text []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("Prometheus parser rejected output: %v\n%s", err, text)
	}
	return fams
}

// flat renders families as "name{k=v,...} type value" lines for comparison.
func flat(fams map[string]*dto.MetricFamily) map[string]string {
	out := make(map[string]string)
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := name + "{" + strings.Join(labels, ",") + "}"
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = "counter " + formatValue(m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				out[key] = "gauge " + formatValue(m.GetGauge().GetValue())
			default:
				out[key] = "unexpected type " + f.GetType().String()
			}
		}
	}
	return out
}

func TestTextParsesWithPrometheus(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := agentRegistry().WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	fams := parse(t, buf.Bytes())
	want := map[string]string{
		"tcu_can_frames_total{bus=can0}":                              "counter 1500",
		"tcu_can_frames_total{bus=can1}":                              "counter 1",
		"tcu_decode_errors_total{bus=can0}":                           "counter 1",
		"tcu_command_outcomes_total{name=door.lock,status=SUCCEEDED}": "counter 1",
		"tcu_queue_records{class=event}":                              "gauge 2",
		"tcu_queue_records{class=telemetry}":                          "gauge 42",
		"tcu_oldest_unsent_seconds{}":                                 "gauge 12.5",
		"tcu_mqtt_reconnects_total{}":                                 "counter 7",
		"tcu_queue_bytes{class=event}":                                "gauge 128",
		"tcu_queue_bytes{class=telemetry}":                            "gauge 2048",
		"tcu_odd_values{v=quote\" back\\ nl\n}":                       "gauge +Inf",
	}
	if diff := cmp.Diff(want, flat(fams)); diff != "" {
		t.Errorf("parsed metrics mismatch (-want +got):\n%s", diff)
	}
	if got := fams["tcu_odd_values"].GetHelp(); got != "Help with \\ backslash\nand newline." {
		t.Errorf("help round trip = %q", got)
	}
}

func TestTextStable(t *testing.T) {
	t.Parallel()
	r := agentRegistry()
	var a, b bytes.Buffer
	if err := r.WriteText(&a); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Errorf("output not stable:\n%s\n---\n%s", a.String(), b.String())
	}
	const wantHead = "# HELP tcu_can_frames_total CAN frames received.\n# TYPE tcu_can_frames_total counter\n" +
		"tcu_can_frames_total{bus=\"can0\"} 1500\ntcu_can_frames_total{bus=\"can1\"} 1\n"
	if !strings.HasPrefix(a.String(), wantHead) {
		t.Errorf("output starts %q, want %q", a.String()[:len(wantHead)], wantHead)
	}
}

func TestRegistrationPanics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		f    func(r *Registry)
	}{
		{"bad metric name", func(r *Registry) { r.Counter("9lives", "") }},
		{"bad label name", func(r *Registry) { r.Gauge("g", "", "bad-label") }},
		{"reserved label name", func(r *Registry) { r.Gauge("g", "", "__name") }},
		{"duplicate label", func(r *Registry) { r.Gauge("g", "", "a", "a") }},
		{"duplicate family", func(r *Registry) { r.Gauge("g", ""); r.Counter("g", "") }},
		{"label count", func(r *Registry) { r.Counter("c", "", "bus").Inc() }},
		{"negative counter", func(r *Registry) { r.Counter("c", "").Add(-1) }},
		{"bad type", func(r *Registry) { r.CollectFunc("h", "", "histogram", nil, func(EmitFunc) {}) }},
		{"emit label count", func(r *Registry) {
			r.CollectFunc("f", "", TypeGauge, []string{"a"}, func(emit EmitFunc) { emit(1) })
			_ = r.WriteText(io.Discard)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", tt.name)
				}
			}()
			tt.f(New())
		})
	}
}

func TestValues(t *testing.T) {
	t.Parallel()
	r := New()
	c := r.Counter("c_total", "", "k").With("x")
	g := r.Gauge("g", "", "k").With("x")
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				c.Inc()
				g.Add(0.5)
				_ = r.WriteText(io.Discard)
			}
		}()
	}
	wg.Wait()
	if c.Value() != 4000 || g.Value() != 2000 {
		t.Errorf("values = %v, %v; want 4000, 2000", c.Value(), g.Value())
	}
	g.Set(-3)
	if g.Value() != -3 {
		t.Errorf("after Set(-3) = %v", g.Value())
	}
}

func TestCheckAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr  string
		allow bool
		ok    bool
	}{
		{"127.0.0.1:9273", false, true},
		{"127.0.0.2:9273", false, true},
		{"[::1]:9273", false, true},
		{"localhost:9273", false, true},
		{":9273", false, false},
		{"0.0.0.0:9273", false, false},
		{"192.168.1.10:9273", false, false},
		{"example.com:9273", false, false},
		{"0.0.0.0:9273", true, true},
		{"127.0.0.1", false, false},
	}
	for _, tt := range tests {
		var opts []ServeOption
		if tt.allow {
			opts = append(opts, AllowNonLoopback())
		}
		err := CheckAddr(tt.addr, opts...)
		if (err == nil) != tt.ok {
			t.Errorf("CheckAddr(%q, allow=%v) = %v, want ok=%v", tt.addr, tt.allow, err, tt.ok)
		}
	}
	if err := CheckAddr("0.0.0.0:1"); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("CheckAddr(0.0.0.0:1) = %v, want ErrNotLoopback", err)
	}
	if err := Serve(context.Background(), ":0", New()); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("Serve(:0) = %v, want ErrNotLoopback", err)
	}
}

func TestServeHTTP(t *testing.T) {
	t.Parallel()
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, ln, agentRegistry()) }()

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	base := "http://" + ln.Addr().String()
	resp, err := client.Get(base + Path)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ContentType {
		t.Errorf("GET %s: %s, Content-Type %q", Path, resp.Status, resp.Header.Get("Content-Type"))
	}
	if got := expfmt.ResponseFormat(resp.Header); got.FormatType() != expfmt.TypeTextPlain {
		t.Errorf("Prometheus sees format %q, want text", got)
	}
	if fams := parse(t, body); len(fams) != 8 {
		t.Errorf("parsed %d families, want 8", len(fams))
	}
	for path, method := range map[string]string{Path: http.MethodPost, "/": http.MethodGet} {
		req, _ := http.NewRequest(method, base+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("%s %s = 200, want an error status", method, path)
		}
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("ServeListener() = %v, want nil after cancel", err)
	}
}

// FuzzText checks that any label value (which may come from outside: a bus
// or device name) and help text yields output the Prometheus parser accepts,
// with both round-tripping (invalid UTF-8 replaced).
func FuzzText(f *testing.F) {
	for _, seed := range []struct{ label, help string }{
		{"can0", "CAN frames."},
		{`quote" back\ nl` + "\n", "multi\nline \\ help"},
		{"\xff\xfe", "\x00"},
		{"", ""},
		{"日本語 ✓", "{}=,#"},
	} {
		f.Add(seed.label, seed.help)
	}
	f.Fuzz(func(t *testing.T, label, help string) {
		r := New()
		r.Counter("fuzz_total", help, "l").Inc(label)
		var buf bytes.Buffer
		if err := r.WriteText(&buf); err != nil {
			t.Fatal(err)
		}
		fams := parse(t, buf.Bytes())
		m := fams["fuzz_total"].GetMetric()
		if len(m) != 1 || len(m[0].GetLabel()) != 1 {
			t.Fatalf("parsed %v", fams)
		}
		if got, want := m[0].GetLabel()[0].GetValue(), strings.ToValidUTF8(label, "\uFFFD"); got != want {
			t.Errorf("label round trip = %q, want %q", got, want)
		}
		// The parser trims leading blanks of HELP; help is ours, not outside
		// input, so only its acceptance matters beyond that.
		if got, want := fams["fuzz_total"].GetHelp(), strings.TrimLeft(strings.ToValidUTF8(help, "\uFFFD"), " \t"); got != want {
			t.Errorf("help round trip = %q, want %q", got, want)
		}
	})
}
