package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"github.com/klauspost/compress/zstd"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

type testRecord struct {
	Seq  uint64          `json:"seq"`
	TS   int64           `json:"ts"`
	Kind string          `json:"kind"`
	Body json.RawMessage `json:"body"`
}

func loadRecords(t testing.TB) []testRecord {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "records.json"))
	if err != nil {
		t.Fatal(err)
	}
	var recs []testRecord
	if err := json.Unmarshal(b, &recs); err != nil {
		t.Fatal(err)
	}
	return recs
}

func encode(t testing.TB, c byte, device string, recs []testRecord) []byte {
	t.Helper()
	e, err := NewEncoder(c)
	if err != nil {
		t.Fatal(err)
	}
	e.Reset(device)
	for _, r := range recs {
		if err := e.Add(r.Seq, r.TS, r.Kind, r.Body); err != nil {
			t.Fatalf("Add(%d): %v", r.Seq, err)
		}
	}
	out, err := e.Finish(nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// envelope builds the JSON envelope the agent's JSON path sends for recs.
func envelope(device string, recs []testRecord) []byte {
	b := []byte(`{"v":1,"device":` + strconv.Quote(device) + `,"records":[`)
	for i, r := range recs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"seq":`+strconv.FormatUint(r.Seq, 10)+`,"ts":`+strconv.FormatInt(r.TS, 10)+`,"kind":`+strconv.Quote(r.Kind)...)
		inner := bytes.TrimSpace(r.Body)
		inner = bytes.TrimSpace(inner[1 : len(inner)-1])
		if len(inner) > 0 {
			b = append(append(b, ','), inner...)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// sameJSON compares two JSON texts as values (numbers as float64, as a
// consumer reading either would see them; numbers beyond float64 by
// their text).
func sameJSON(t testing.TB, a, b []byte) bool {
	t.Helper()
	return reflect.DeepEqual(jsonValue(t, a), jsonValue(t, b))
}

func jsonValue(t testing.TB, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	return normalize(v)
}

func normalize(v any) any {
	switch v := v.(type) {
	case json.Number:
		if f, err := strconv.ParseFloat(string(v), 64); err == nil {
			return f
		}
		return "number:" + string(v)
	case map[string]any:
		for k, x := range v {
			v[k] = normalize(x)
		}
	case []any:
		for i, x := range v {
			v[i] = normalize(x)
		}
	}
	return v
}

var compressions = []struct {
	name string
	c    byte
}{{"none", CompressNone}, {"zstd", CompressZstd}, {"deflate", CompressDeflate}}

// TestGolden: the encoder writes exactly the golden files; the decoder
// turns each into the golden JSON envelope, which equals the JSON path's
// envelope of the same records.
func TestGolden(t *testing.T) {
	recs := loadRecords(t)
	wantJSON := filepath.Join("testdata", "records.envelope.json")
	for _, tc := range compressions {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join("testdata", "records."+tc.name+".tcb")
			got := encode(t, tc.c, "demo-car-001", recs)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("encoder output differs from %s (run with -update after a deliberate format change)", path)
			}
			js, err := ToJSON(want)
			if err != nil {
				t.Fatal(err)
			}
			if *update && tc.c == CompressNone {
				if err := os.WriteFile(wantJSON, append(js, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			golden, err := os.ReadFile(wantJSON)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(js, bytes.TrimSuffix(golden, []byte("\n"))) {
				t.Errorf("decoded %s:\n%s\nwant %s", path, js, golden)
			}
			if !sameJSON(t, js, envelope("demo-car-001", recs)) {
				t.Errorf("decoded batch differs from the JSON envelope:\n%s\n%s", js, envelope("demo-car-001", recs))
			}
		})
	}
}

func TestAddRejectsAndUndoes(t *testing.T) {
	e, err := NewEncoder(CompressNone)
	if err != nil {
		t.Fatal(err)
	}
	e.Reset("d")
	if err := e.Add(1, 10, "event", []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	n := e.Len()
	for _, bad := range []string{`[]`, `{"a":}`, `{"a":1} x`, `{"b":"new", "c":tru}`, `{"a":01}`, `{"a":"\x01"}`, ``, `{"x":{`} {
		if err := e.Add(2, 20, "kind-new", []byte(bad)); err == nil {
			t.Errorf("Add(%q) = nil, want error", bad)
		}
		if e.Len() != n || e.Records() != 1 {
			t.Errorf("after failed Add(%q): len %d records %d, want %d 1", bad, e.Len(), e.Records(), n)
		}
	}
	if err := e.Add(2, 20, "event", []byte(`{"a":2}`)); err != nil {
		t.Fatal(err)
	}
	out, _ := e.Finish(nil)
	b, err := Decode(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Records) != 2 || b.Records[1].Seq != 2 || b.Records[1].TS != 20 || string(b.Records[1].Fields) != `{"a":2}` {
		t.Errorf("decoded %+v", b.Records)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := encode(t, CompressNone, "d", loadRecords(t))
	zbomb := func() []byte { // 100 MB of zeros in a small zstd frame
		z, _ := zstd.NewWriter(nil)
		return append([]byte{'T', 'C', 'B', Version, CompressZstd}, z.EncodeAll(make([]byte, 100<<20), nil)...)
	}()
	tests := []struct {
		name    string
		payload []byte
	}{
		{"json", []byte(`{"v":1}`)},
		{"version", append([]byte{'T', 'C', 'B', 9, 0}, good[HeaderSize:]...)},
		{"compression", append([]byte{'T', 'C', 'B', Version, 7}, good[HeaderSize:]...)},
		{"truncated", good[:len(good)-3]},
		{"trailing", append(append([]byte{}, good...), 0)},
		{"huge count", []byte{'T', 'C', 'B', Version, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"zstd bomb", zbomb},
		{"bad zstd", []byte{'T', 'C', 'B', Version, CompressZstd, 1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Decode(tt.payload); !errors.Is(err, ErrFormat) {
				t.Errorf("Decode = %v, want ErrFormat", err)
			}
		})
	}
}

// FuzzDecode: hostile input never panics, and whatever decodes is valid
// JSON that encodes and decodes to the same thing.
func FuzzDecode(f *testing.F) {
	recs := loadRecords(f)
	for _, tc := range compressions {
		f.Add(encode(f, tc.c, "demo-car-001", recs))
		f.Add(encode(f, tc.c, "x", recs[:1]))
	}
	f.Add([]byte{'T', 'C', 'B', Version, 0, 0, 0, 1, 0, 0, 0, 0x07, 0x07, 0x07})
	f.Fuzz(func(t *testing.T, payload []byte) {
		b, err := Decode(payload)
		if err != nil {
			return
		}
		js := AppendEnvelope(nil, b)
		if !json.Valid(js) {
			t.Fatalf("decoded to invalid JSON %s", js)
		}
		var again []testRecord
		for _, r := range b.Records {
			again = append(again, testRecord{Seq: r.Seq, TS: r.TS, Kind: r.Kind, Body: r.Fields})
		}
		js2, err := ToJSON(encode(t, CompressNone, b.Device, again))
		if err != nil {
			t.Fatal(err)
		}
		if !sameJSON(t, js, js2) {
			t.Fatalf("re-encoded batch differs:\n%s\n%s", js, js2)
		}
	})
}

// FuzzRoundTrip: every JSON object body the encoder accepts decodes to the
// same JSON value; the encoder accepts every valid JSON object.
func FuzzRoundTrip(f *testing.F) {
	for _, r := range loadRecords(f) {
		f.Add(uint64(r.Seq), r.TS, string(r.Body))
	}
	f.Add(uint64(1)<<63, int64(-5), `{"a":[[[]]],"b":"\u0000"}`)
	f.Fuzz(func(t *testing.T, seq uint64, ts int64, body string) {
		e, err := NewEncoder(CompressZstd)
		if err != nil {
			t.Fatal(err)
		}
		e.Reset("dev")
		_ = e.Add(5, 1, "event", []byte(`{"a":1}`))
		err = e.Add(seq, ts, "event", []byte(body))
		trimmed := bytes.TrimSpace([]byte(body))
		isObject := json.Valid(trimmed) && len(trimmed) > 0 && trimmed[0] == '{'
		if err != nil {
			if isObject && bytes.Count(trimmed, []byte("{"))+bytes.Count(trimmed, []byte("[")) < maxDepth {
				t.Fatalf("Add(%q) = %v for a valid object", body, err)
			}
			return
		}
		if !isObject {
			t.Fatalf("Add accepted %q, not a JSON object", body)
		}
		out, err := e.Finish(nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Decode(out)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		if len(b.Records) != 2 || b.Records[1].Seq != seq || b.Records[1].TS != ts {
			t.Fatalf("records %+v", b.Records)
		}
		if !sameJSON(t, b.Records[1].Fields, trimmed) {
			t.Fatalf("fields %s, want %s", b.Records[1].Fields, body)
		}
	})
}
