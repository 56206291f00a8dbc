package record

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRoundTripAndEnvelope(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		rec  Record
		env  string
	}{
		{"telemetry", Record{Kind: KindTelemetry, Time: time.UnixMilli(1700000000123), Body: json.RawMessage(`{"signals":{"Vehicle.Speed":12.5}}`)},
			`{"seq":42,"ts":1700000000123,"kind":"telemetry","signals":{"Vehicle.Speed":12.5}}`},
		{"empty body", Record{Kind: KindEvent, Time: time.UnixMilli(5), Body: json.RawMessage(` { } `)},
			`{"seq":42,"ts":5,"kind":"event"}`},
		{"direct", Record{Kind: KindCommandResponse, Time: time.UnixMilli(7), Topic: "cmd/tcu/car/response/1", Body: json.RawMessage(`{"id":"1"}`)},
			`{"seq":42,"ts":7,"kind":"command_response","id":"1"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := tt.rec.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			got, err := Unmarshal(b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.rec.Time.UnixMilli(), got.Time.UnixMilli()); diff != "" || got.Kind != tt.rec.Kind || got.Topic != tt.rec.Topic {
				t.Errorf("round trip: %+v -> %+v", tt.rec, got)
			}
			env := string(AppendEnvelope(nil, 42, got))
			if env != tt.env {
				t.Errorf("AppendEnvelope = %s, want %s", env, tt.env)
			}
			if !json.Valid([]byte(env)) {
				t.Errorf("envelope record is not valid JSON: %s", env)
			}
		})
	}
}

func TestUnmarshalRejects(t *testing.T) {
	t.Parallel()
	for _, in := range []string{``, `{}`, `[]`, `{"v":2,"k":"x","t":1,"b":{}}`, `{"v":1,"k":"","t":1,"b":{}}`,
		`{"v":1,"k":"x","t":1,"b":[1]}`, `{"v":1,"k":"x","t":1,"b":{},"zz":1}`, `{"v":1,"k":"x","t":1,"b":{}} {}`} {
		if _, err := Unmarshal([]byte(in)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Unmarshal(%q) = %v, want ErrCorrupt", in, err)
		}
	}
	if _, err := (Record{Kind: "x", Body: json.RawMessage(`"str"`)}).Marshal(); err == nil {
		t.Error("Marshal accepted a non-object body")
	}
}

// FuzzRecordDecode feeds arbitrary stored bytes (a damaged buffer) to
// Unmarshal: it must never panic, and whatever it accepts must produce a
// valid JSON envelope record.
func FuzzRecordDecode(f *testing.F) {
	good, _ := Record{Kind: KindTelemetry, Time: time.UnixMilli(1), Body: json.RawMessage(`{"a":1}`)}.Marshal()
	f.Add(good)
	f.Add([]byte(`{"v":1,"k":"event","t":1,"p":"x/y","b":{"s":"\u0000"}}`))
	f.Add([]byte(`{"v":1,"k":"e","t":-1,"b":{ }}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Unmarshal(b)
		if err != nil {
			return
		}
		env := AppendEnvelope(nil, 1, r)
		if !json.Valid(env) {
			t.Fatalf("accepted %q but produced invalid envelope %q", b, env)
		}
	})
}

// TestReadsFormat1: a store written before format 2 still drains after an
// upgrade.
func TestReadsFormat1(t *testing.T) {
	t.Parallel()
	v1 := []byte(`{"v":1,"k":"telemetry","t":1700000000123,"b":{"signals":{"Vehicle.Speed":12.5}}}`)
	r, err := Unmarshal(v1)
	if err != nil {
		t.Fatal(err)
	}
	if env := string(AppendEnvelope(nil, 7, r)); env != `{"seq":7,"ts":1700000000123,"kind":"telemetry","signals":{"Vehicle.Speed":12.5}}` {
		t.Errorf("envelope of a format 1 record: %s", env)
	}
	v1direct := []byte(`{"v":1,"k":"command_response","t":7,"p":"cmd/tcu/car/response/1","b":{"id":"1"}}`)
	if r, err := Unmarshal(v1direct); err != nil || r.Topic != "cmd/tcu/car/response/1" || string(r.Body) != `{"id":"1"}` {
		t.Errorf("format 1 direct message: %+v, %v", r, err)
	}
}

// TestFormat2Rejects: damaged format 2 bytes are ErrCorrupt, never a record
// whose envelope would not be JSON.
func TestFormat2Rejects(t *testing.T) {
	t.Parallel()
	good, err := Record{Kind: KindEvent, Time: time.UnixMilli(-5), Topic: "a/b", Body: json.RawMessage(`{"x":[1,2]}`)}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if good[0] != storedV2 {
		t.Fatalf("Marshal wrote format %d, want 2", good[0])
	}
	if r, err := Unmarshal(good); err != nil || r.Time.UnixMilli() != -5 || r.Topic != "a/b" || r.Kind != KindEvent {
		t.Fatalf("round trip: %+v, %v", r, err)
	}
	bad := [][]byte{
		{storedV2},                         // no kind
		{storedV2, 9, 'e'},                 // kind longer than the bytes
		{storedV2, 1, 'E', 2, 0, '{', '}'}, // bad kind
		{storedV2, 1, 'e'},                 // no timestamp
		{storedV2, 1, 'e', 2, 5, 'a'},      // topic longer than the bytes
		{storedV2, 1, 'e', 2, 0},           // no body
		{storedV2, 1, 'e', 2, 0, '[', ']'},
		{storedV2, 1, 'e', 2, 0, '{', '"'},
		append(good[:len(good):len(good)], " {}"...), // trailing data
		good[:len(good)-1],                           // cut short
		{3, 1, 'e', 2, 0, '{', '}'},                  // unknown format
	}
	for _, b := range bad {
		if r, err := Unmarshal(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Unmarshal(%q) = %+v, %v; want ErrCorrupt", b, r, err)
		}
	}
}

// BenchmarkUnmarshal is the drain's per-record decoding step, format 2
// (written now) against format 1 (read for stores of older releases).
func BenchmarkUnmarshal(b *testing.B) {
	body := json.RawMessage(`{"signals":{"Vehicle.Speed":42.5,"Vehicle.Powertrain.Battery.Voltage":12.4,"Vehicle.Cabin.Door.Row1.DriverSide.IsLocked":true}}`)
	v2, err := Record{Kind: KindTelemetry, Time: time.UnixMilli(1700000000123), Body: body}.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	v1, err := json.Marshal(storedJSON{V: storedV1, Kind: KindTelemetry, TS: 1700000000123, Body: body})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		data []byte
	}{{"format2", v2}, {"format1", v1}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var env []byte
			for b.Loop() {
				r, err := Unmarshal(c.data)
				if err != nil {
					b.Fatal(err)
				}
				env = AppendEnvelope(env[:0], 1, r)
			}
		})
	}
}
