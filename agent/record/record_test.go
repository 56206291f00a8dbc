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
