package uplink

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcu-agent/tcu-agent/agent/record"
	"github.com/tcu-agent/tcu-agent/agent/record/wire"
)

var testTopics = topicSet{telemetry: "dt/tcu/T1/telemetry", events: "dt/tcu/T1/events", status: "dt/tcu/T1/status"}

func rec(t testing.TB, seq uint64, class Class, r record.Record) Record {
	t.Helper()
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return Record{Seq: seq, Class: class, Time: r.Time, Data: b}
}

// TestBatcherSplitsBySizeAndTopic: stream records become envelopes no
// larger than maxPayload, one topic each; direct messages go alone and
// verbatim; every seq is in exactly one message; bad records are dropped.
func TestBatcherSplitsBySizeAndTopic(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	b := newBatcher("T1", testTopics, 1024, time.Second, time.Time{}, EncodingJSON)
	var seq uint64
	for i := 0; i < 40; i++ {
		seq++
		b.add(rec(t, seq, ClassTelemetry, record.Record{Kind: "telemetry", Time: now, Body: json.RawMessage(fmt.Sprintf(`{"speed":%d}`, i))}), now)
	}
	seq++
	b.add(rec(t, seq, ClassEvent, record.Record{Kind: "event", Time: now, Body: json.RawMessage(`{"door":"open"}`)}), now)
	seq++
	b.add(rec(t, seq, ClassCritical, record.Record{Kind: "command_response", Time: now, Topic: "cmd/tcu/T1/response/x", Body: json.RawMessage(`{"id":"x"}`)}), now)
	seq++
	b.add(Record{Seq: seq, Data: []byte("garbage")}, now)
	seq++
	big := `{"blob":"` + strings.Repeat("x", 2000) + `"}`
	b.add(rec(t, seq, ClassTelemetry, record.Record{Kind: "telemetry", Time: now, Body: json.RawMessage(big)}), now)
	b.flushDue(now.Add(time.Second), now, true)

	if diff := cmp.Diff([]uint64{43, 44}, b.takeDropped()); diff != "" {
		t.Errorf("dropped (-want +got):\n%s", diff)
	}
	seen := map[uint64]int{}
	topics := map[string]int{}
	for m := b.peek(); m != nil; m = b.peek() {
		b.pop()
		topics[m.topic]++
		if len(m.payload) > 1024 {
			t.Errorf("message of %d bytes > 1024", len(m.payload))
		}
		for _, s := range m.seqs {
			seen[s]++
		}
		if m.topic == "cmd/tcu/T1/response/x" {
			if string(m.payload) != `{"id":"x"}` || len(m.seqs) != 1 {
				t.Errorf("direct message = %s %v", m.payload, m.seqs)
			}
			continue
		}
		var env struct {
			V       int    `json:"v"`
			Device  string `json:"device"`
			Records []struct {
				Seq  uint64 `json:"seq"`
				Kind string `json:"kind"`
			} `json:"records"`
		}
		if err := json.Unmarshal(m.payload, &env); err != nil || env.V != 1 || env.Device != "T1" {
			t.Fatalf("bad envelope %s: %v", m.payload, err)
		}
		for i, r := range env.Records {
			if r.Seq != m.seqs[i] {
				t.Errorf("envelope seq %d, message acks %d", r.Seq, m.seqs[i])
			}
		}
	}
	for s := uint64(1); s <= 42; s++ {
		if seen[s] != 1 {
			t.Errorf("seq %d in %d messages, want 1", s, seen[s])
		}
	}
	if topics[testTopics.telemetry] < 2 || topics[testTopics.events] != 1 {
		t.Errorf("messages per topic = %v, want telemetry split and one events", topics)
	}
	if b.pending() {
		t.Error("batcher still holds records")
	}
}

// TestBatcherLatency: a partly filled batch waits for more records until
// BatchLatency has passed since it was opened, but a backlog record that
// already waited in the queue goes as soon as the queue is empty.
func TestBatcherLatency(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	b := newBatcher("T1", testTopics, 4096, time.Second, time.Time{}, EncodingJSON)
	b.add(rec(t, 1, ClassTelemetry, record.Record{Kind: "telemetry", Time: now, Body: json.RawMessage(`{}`)}), now)
	b.flushDue(now.Add(500*time.Millisecond), now.Add(500*time.Millisecond), true)
	if b.peek() != nil {
		t.Fatal("flushed before the latency budget")
	}
	if d := b.deadline(); !d.Equal(now.Add(time.Second)) {
		t.Errorf("deadline = %v, want %v", d, now.Add(time.Second))
	}
	b.flushDue(now.Add(time.Second), now.Add(time.Second), false)
	if b.peek() == nil {
		t.Fatal("not flushed at the latency budget")
	}
	b.pop()
	old := now.Add(-time.Hour)
	b.add(rec(t, 2, ClassTelemetry, record.Record{Kind: "telemetry", Time: old, Body: json.RawMessage(`{}`)}), now)
	b.flushDue(now, now, false)
	if b.peek() != nil {
		t.Fatal("backlog flushed while the queue may have more")
	}
	b.flushDue(now, now, true)
	if b.peek() == nil {
		t.Fatal("backlog not flushed when the queue is empty")
	}
	if got := b.held(); len(got) != 1 || got[0] != 2 {
		t.Errorf("held = %v, want [2]", got)
	}
}

// FuzzBatcher: whatever the buffer hands out, the batcher never panics,
// every message fits and is valid JSON, and every record is either in
// exactly one message or dropped.
func FuzzBatcher(f *testing.F) {
	good, _ := record.Record{Kind: "telemetry", Time: time.UnixMilli(1), Body: json.RawMessage(`{"a":1}`)}.Marshal()
	f.Add(good, uint8(0))
	f.Add([]byte(`{"v":1,"k":"event","t":5,"b":{}}`), uint8(1))
	f.Add([]byte(`{"v":1,"k":"x","t":5,"p":"cmd/tcu/T1/response/1","b":{"id":"1"}}`), uint8(2))
	f.Add([]byte(`{"v":2}`), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, class uint8) {
		now := time.UnixMilli(1_700_000_000_000)
		for _, enc := range []string{EncodingJSON, EncodingCompact} {
			b := newBatcher("T1", testTopics, 1024, time.Second, time.Time{}, enc)
			for i := uint64(1); i <= 3; i++ {
				b.add(Record{Seq: i, Class: Class(class % 3), Data: data}, now)
			}
			b.flushDue(now.Add(time.Hour), now.Add(time.Hour), true)
			count := len(b.takeDropped())
			for m := b.peek(); m != nil; m = b.peek() {
				b.pop()
				count += len(m.seqs)
				if len(m.payload) > 1024 {
					t.Fatalf("%s: payload %d bytes", enc, len(m.payload))
				}
				if wire.IsCompact(m.payload) {
					got, err := wire.Decode(m.payload)
					if err != nil || len(got.Records) != len(m.seqs) {
						t.Fatalf("compact payload: %v, %d records for %d seqs", err, len(got.Records), len(m.seqs))
					}
				} else if !json.Valid(m.payload) {
					t.Fatalf("%s: invalid JSON %q", enc, m.payload)
				}
			}
			if count != 3 {
				t.Fatalf("%s: %d records accounted for, want 3", enc, count)
			}
		}
	})
}

// TestBatcherCompact: with the compact encoding, stream records become
// compact batches no larger than maxPayload that decode to exactly the
// records each message acknowledges; direct messages still go verbatim;
// a record that cannot fit alone is dropped.
func TestBatcherCompact(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	b := newBatcher("T1", testTopics, 1024, time.Second, time.Time{}, EncodingCompact)
	var seq uint64
	bodies := map[uint64]string{}
	for i := range 300 {
		seq++
		body := fmt.Sprintf(`{"signal":"Vehicle.S%d","value":%d.%d,"source":"can0"}`, i%17, i*7919%1000, i%10)
		bodies[seq] = body
		b.add(rec(t, seq, ClassEvent, record.Record{Kind: "event", Time: now.Add(time.Duration(i) * time.Millisecond), Body: json.RawMessage(body)}), now)
	}
	seq++
	b.add(rec(t, seq, ClassCritical, record.Record{Kind: "command_response", Time: now, Topic: "cmd/tcu/T1/response/x", Body: json.RawMessage(`{"id":"x"}`)}), now)
	direct := seq
	seq++
	noise := make([]byte, 1500)
	for i := range noise {
		noise[i] = 'a' + byte(i*7919%26)
	}
	b.add(rec(t, seq, ClassTelemetry, record.Record{Kind: "telemetry", Time: now, Body: json.RawMessage(`{"blob":"` + string(noise) + `"}`)}), now)
	b.flushDue(now.Add(time.Second), now, true)
	if diff := cmp.Diff([]uint64{seq}, b.takeDropped()); diff != "" {
		t.Errorf("dropped (-want +got):\n%s", diff)
	}
	seen := map[uint64]int{}
	messages := 0
	for m := b.peek(); m != nil; m = b.peek() {
		b.pop()
		if len(m.payload) > 1024 {
			t.Errorf("message of %d bytes > 1024", len(m.payload))
		}
		if m.topic == "cmd/tcu/T1/response/x" {
			if string(m.payload) != `{"id":"x"}` || len(m.seqs) != 1 || m.seqs[0] != direct {
				t.Errorf("direct message %q %v", m.payload, m.seqs)
			}
			continue
		}
		messages++
		if m.topic != testTopics.events {
			t.Errorf("topic %s", m.topic)
		}
		got, err := wire.Decode(m.payload)
		if err != nil {
			t.Fatal(err)
		}
		if got.Device != "T1" || len(got.Records) != len(m.seqs) {
			t.Fatalf("device %q, %d records for %d seqs", got.Device, len(got.Records), len(m.seqs))
		}
		for i, r := range got.Records {
			if r.Seq != m.seqs[i] || r.Kind != "event" || string(r.Fields) != bodies[r.Seq] {
				t.Errorf("record %d: %+v, want seq %d body %s", i, r, m.seqs[i], bodies[r.Seq])
			}
			seen[r.Seq]++
		}
	}
	if len(seen) != 300 || messages < 2 {
		t.Errorf("%d distinct records in %d messages, want 300 in several", len(seen), messages)
	}
	for s, n := range seen {
		if n != 1 {
			t.Errorf("seq %d in %d messages", s, n)
		}
	}
}
