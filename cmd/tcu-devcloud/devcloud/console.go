package devcloud

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/record/wire"
)

// console prints one line per telemetry batch, event batch, status change
// and command response.
type console struct {
	mu    sync.Mutex
	w     io.Writer
	quiet bool
	// signals are the names each thing sent so far; guarded by mu.
	signals map[string]map[string]bool
}

func (c *Cloud) startConsole(w io.Writer, quiet bool) {
	con := &console{w: w, quiet: quiet}
	c.Subscribe("dt/tcu/+/telemetry", func(t string, b []byte) { con.batch("telemetry", t, b) })
	c.Subscribe("dt/tcu/+/events", func(t string, b []byte) { con.batch("events", t, b) })
	c.Subscribe("dt/tcu/+/status", con.status)
	c.Subscribe("cmd/tcu/+/response/+", con.response)
	c.jobs.Observe(con.job)
}

// job prints a job execution's change.
func (con *console) job(e JobExecution) {
	line := fmt.Sprintf("%-10s %s: %s %s version %d", "job", e.ThingName, e.JobID, e.Status, e.VersionNumber)
	for _, k := range []string{"version", "step", "reason", "detail"} {
		if v, ok := e.StatusDetails[k]; ok {
			line += fmt.Sprintf(" %s=%q", k, v)
		}
	}
	con.printf("%s", line)
}

// newSignals prints the signal names a thing sends for the first time:
// the "signal" of event records and the keys of object fields.
func (con *console) newSignals(thing string, recs []map[string]json.RawMessage) {
	var names []string
	con.mu.Lock()
	if con.signals == nil {
		con.signals = map[string]map[string]bool{}
	}
	seen := con.signals[thing]
	if seen == nil {
		seen = map[string]bool{}
		con.signals[thing] = seen
	}
	add := func(n string) {
		if n != "" && !seen[n] && len(seen) < 10000 {
			seen[n] = true
			names = append(names, n)
		}
	}
	for _, r := range recs {
		var sig string
		if json.Unmarshal(r["signal"], &sig) == nil {
			add(sig)
		}
		for k, v := range r {
			var obj map[string]json.RawMessage
			if k != "signal" && json.Unmarshal(v, &obj) == nil {
				for n := range obj {
					add(n)
				}
			}
		}
	}
	con.mu.Unlock()
	if len(names) > 0 {
		sort.Strings(names)
		con.printf("%-10s %s: new %s", "signals", thing, strings.Join(names, ", "))
	}
}

func (con *console) printf(format string, args ...any) {
	line := strings.Map(func(r rune) rune { // device text must not drive the terminal
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, fmt.Sprintf(format, args...))
	con.mu.Lock()
	defer con.mu.Unlock()
	fmt.Fprintln(con.w, time.Now().Format("15:04:05.000")+" "+line)
}

// envelope is the telemetry payload of PRODUCT.md.
type envelope struct {
	V       int                          `json:"v"`
	Device  string                       `json:"device"`
	Records []map[string]json.RawMessage `json:"records"`
}

func (con *console) batch(kind, topic string, b []byte) {
	if con.quiet && kind == "telemetry" {
		return
	}
	format := ""
	if wire.IsCompact(b) { // shown decoded, with its size on the wire
		js, err := wire.ToJSON(b)
		if err != nil {
			con.printf("%-10s %s: undecodable compact batch (%d bytes): %v", kind, thingOf(topic), len(b), err)
			return
		}
		format = fmt.Sprintf(" [compact %d B, JSON %d B]", len(b), len(js))
		b = js
	}
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		con.printf("%-10s %s: undecodable batch (%d bytes): %v", kind, thingOf(topic), len(b), err)
		return
	}
	if len(env.Records) == 0 {
		con.printf("%-10s %s: empty batch", kind, env.Device)
		return
	}
	con.newSignals(env.Device, env.Records)
	first, last := string(env.Records[0]["seq"]), string(env.Records[len(env.Records)-1]["seq"])
	con.printf("%-10s %s: %d records seq %s..%s %s%s", kind, env.Device, len(env.Records), first, last, sample(env.Records[len(env.Records)-1], 4), format)
}

// sample formats up to n data fields of a record.
func sample(rec map[string]json.RawMessage, n int) string {
	keys := make([]string, 0, len(rec))
	for k := range rec {
		switch k {
		case "seq", "ts":
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		if len(parts) == n {
			parts = append(parts, "…")
			break
		}
		v := string(rec[k])
		if len(v) > 40 {
			v = v[:40] + "…"
		}
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, " ")
}

func (con *console) status(topic string, b []byte) {
	var st struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(b, &st) != nil || st.Status == "" {
		st.Status = strings.TrimSpace(string(b))
	}
	con.printf("%-10s %s: %s", "status", thingOf(topic), st.Status)
}

func (con *console) response(topic string, b []byte) {
	r, err := ParseResponse(b)
	if err != nil {
		con.printf("%-10s %s: %v", "response", thingOf(topic), err)
		return
	}
	con.printf("%-10s %s: %s %s (%s) %s", "response", r.Device, r.ID, r.Status, r.ReasonCode, r.Reason)
}

// thingOf returns the {thing} level of dt/tcu/{thing}/... or cmd/tcu/{thing}/...
func thingOf(topic string) string {
	parts := strings.SplitN(topic, "/", 4)
	if len(parts) < 3 {
		return topic
	}
	return parts[2]
}
