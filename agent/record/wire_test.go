package record_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/record"
	"github.com/tcu-agent/tcu-agent/agent/record/wire"
)

// randomBody is a JSON object like the telemetry pipeline writes, with
// the odd value a command result or a future record kind could carry.
func randomBody(r *rand.Rand) string {
	var parts []string
	for i := range r.IntN(6) {
		name := fmt.Sprintf("%q", fmt.Sprintf("Vehicle.Signal%d", r.IntN(20)+i*20))
		var v string
		switch r.IntN(7) {
		case 0:
			v = fmt.Sprint(r.Float64() * 1000)
		case 1:
			v = fmt.Sprint(r.Int64N(1<<40) - 1<<39)
		case 2:
			v = fmt.Sprintf("%.2f", r.Float64()*100)
		case 3:
			v = fmt.Sprintf("%q", strings.Repeat("ä\"\\", r.IntN(3)))
		case 4:
			v = []string{"true", "false", "null"}[r.IntN(3)]
		case 5:
			v = fmt.Sprintf(`{"signals":{"a":%g,"b":%d},"labels":{"a":"x"}}`, r.NormFloat64(), r.IntN(9))
		default:
			v = fmt.Sprintf(`[%d,%g,"s"]`, r.IntN(100), r.ExpFloat64()*1e-9)
		}
		parts = append(parts, name+":"+v)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// TestCompactMatchesEnvelope is a property test: for random record
// streams, the compact batch decodes to the same records as the JSON
// envelope of the same records (compared as JSON values).
func TestCompactMatchesEnvelope(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	kinds := []string{record.KindTelemetry, record.KindEvent, record.KindCommandResult}
	for round := range 200 {
		enc, err := wire.NewEncoder([]byte{wire.CompressNone, wire.CompressZstd, wire.CompressDeflate}[round%3])
		if err != nil {
			t.Fatal(err)
		}
		enc.Reset("TCU-1")
		env := []byte(`{"v":1,"device":"TCU-1","records":[`)
		seq := r.Uint64N(1 << 50)
		ts := time.UnixMilli(1764930000000 + r.Int64N(1e9))
		for i := range r.IntN(50) + 1 {
			seq += uint64(r.IntN(3)) + 1
			ts = ts.Add(time.Duration(r.IntN(2000)-200) * time.Millisecond)
			stored, err := record.Record{Kind: kinds[r.IntN(len(kinds))], Time: ts, Body: json.RawMessage(randomBody(r))}.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			rec, err := record.Unmarshal(stored)
			if err != nil {
				t.Fatal(err)
			}
			if i > 0 {
				env = append(env, ',')
			}
			env = record.AppendEnvelope(env, seq, rec)
			if err := enc.Add(seq, rec.Time.UnixMilli(), rec.Kind, rec.Body); err != nil {
				t.Fatalf("round %d: Add(%s): %v", round, rec.Body, err)
			}
		}
		env = append(env, "]}"...)
		payload, err := enc.Finish(nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := wire.ToJSON(payload)
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		if err := json.Unmarshal(env, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(got, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("round %d: compact decodes to\n%s\nJSON envelope is\n%s", round, got, env)
		}
	}
}
