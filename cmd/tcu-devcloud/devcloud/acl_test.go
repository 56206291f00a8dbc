package devcloud

import (
	"strings"
	"testing"
)

func TestAllowed(t *testing.T) {
	tests := []struct {
		name, kind, thing, topic string
		want                     bool
	}{
		{"own telemetry", KindThing, "T1", "dt/tcu/T1/telemetry", true},
		{"own command filter", KindThing, "T1", "cmd/tcu/T1/request/+", true},
		{"own shadow", KindThing, "T1", "$aws/things/T1/shadow/update", true},
		{"own aws commands", KindThing, "T1", "$aws/commands/things/T1/executions/+/request/json", true},
		{"other thing", KindThing, "T1", "dt/tcu/T2/telemetry", false},
		{"prefix of other thing", KindThing, "T1", "dt/tcu/T10/telemetry", false},
		{"wildcard over things", KindThing, "T1", "dt/tcu/+/telemetry", false},
		{"own jobs", KindThing, "T1", "$aws/things/T1/jobs/j-1/update", true},
		{"other jobs", KindThing, "T1", "$aws/things/T2/jobs/notify-next", false},
		{"thing control plane", KindThing, "T1", "devcloud/ctl/job/create", false},
		{"other shadow", KindThing, "T1", "$aws/things/T2/shadow/update", false},
		{"thing provisioning", KindThing, "T1", "$aws/certificates/create/json", false},
		{"thing renewal csr", KindThing, "T1", "$aws/certificates/create-from-csr/json/accepted", true},
		{"thing renewal register", KindThing, "T1", "$aws/provisioning-templates/Tpl/provision/json", true},
		{"claim create", KindClaim, "", "$aws/certificates/create/json", true},
		{"claim csr accepted", KindClaim, "", "$aws/certificates/create-from-csr/json/accepted", true},
		{"claim register", KindClaim, "", "$aws/provisioning-templates/Tpl/provision/json", true},
		{"claim telemetry", KindClaim, "", "dt/tcu/T1/telemetry", false},
		{"plain anything", kindPlain, "", "cmd/tcu/T9/request/x", true},
		{"unknown kind", "observer", "", "dt/tcu/T1/telemetry", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := allowed(tt.kind, tt.thing, tt.topic); got != tt.want {
				t.Errorf("allowed(%q, %q, %q) = %v, want %v", tt.kind, tt.thing, tt.topic, got, tt.want)
			}
		})
	}
}

// FuzzParseResponse: command responses come from devices; the parser
// never panics and accepts only responses with an id and a status.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		`{"id":"a","device":"T1","status":"SUCCEEDED","reason_code":"ok","reason":"","ts":1,"state":{"locked":true}}`,
		`{"id":"a","status":"IN_PROGRESS"}`, `{}`, `[]`, `{"id":1}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResponse(b)
		if err == nil && (r.ID == "" || r.Status == "") {
			t.Errorf("accepted %q without id or status", b)
		}
	})
}

// FuzzConsoleBatch: the console prints whatever devices publish as
// telemetry without panicking, one line per message.
func FuzzConsoleBatch(f *testing.F) {
	for _, s := range []string{
		`{"v":1,"device":"T1","records":[{"seq":1,"ts":2,"kind":"telemetry","speed":3}]}`,
		`{"v":1,"device":"T1","records":[]}`, `{"records":[{}]}`, `null`, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var out strings.Builder
		con := &console{w: &out}
		con.batch("telemetry", "dt/tcu/T1/telemetry", b)
		if n := strings.Count(out.String(), "\n"); n != 1 {
			t.Fatalf("%d lines for one message", n)
		}
	})
}

// TestConsoleLines: one line per batch with count, seq range and a few
// values; one per command response; device text cannot inject escapes.
func TestConsoleLines(t *testing.T) {
	var out strings.Builder
	con := &console{w: &out}
	con.batch("telemetry", "dt/tcu/T1/telemetry", []byte(`{"v":1,"device":"T1","records":[{"seq":7,"ts":1,"kind":"telemetry","speed":3},{"seq":9,"ts":2,"kind":"telemetry","speed":4,"locked":true}]}`))
	con.response("cmd/tcu/T1/response/abc", []byte(`{"id":"abc","device":"T1","status":"SUCCEEDED","reason_code":"ok","reason":"locked\u001b[2J"}`))
	con.status("dt/tcu/T1/status", []byte(`{"v":1,"device":"T1","status":"online","ts":1}`))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		`telemetry  T1: 2 records seq 7..9 kind="telemetry" locked=true speed=4`,
		`response   T1: abc SUCCEEDED (ok) locked?[2J`,
		`status     T1: online`,
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines:\n%s", len(lines), out.String())
	}
	for i, w := range want {
		if got := lines[i][len("15:04:05.000 "):]; got != w {
			t.Errorf("line %d = %q, want %q", i, got, w)
		}
	}
}

// TestConsoleJobsAndSignals: a line per job change with its reason, and
// a line when a thing sends a signal for the first time.
func TestConsoleJobsAndSignals(t *testing.T) {
	var out strings.Builder
	con := &console{w: &out}
	con.job(JobExecution{JobID: "j1", ThingName: "T1", Status: JobFailed, VersionNumber: 3,
		StatusDetails: map[string]string{"reason": "bad_hash", "other": "x"}})
	batch := func(sigs string) {
		con.batch("telemetry", "dt/tcu/T1/telemetry", []byte(`{"v":1,"device":"T1","records":[{"seq":1,"ts":1,"kind":"telemetry","signals":{`+sigs+`}}]}`))
	}
	batch(`"B":1,"A":2`)
	batch(`"A":3`)
	batch(`"A":3,"C":1`)
	con.batch("events", "dt/tcu/T1/events", []byte(`{"v":1,"device":"T1","records":[{"seq":2,"ts":1,"kind":"event","signal":"C","value":1},{"seq":3,"ts":1,"kind":"event","signal":"D","value":1}]}`))
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if l = l[len("15:04:05.000 "):]; !strings.HasPrefix(l, "telemetry") && !strings.HasPrefix(l, "events") {
			got = append(got, l)
		}
	}
	want := []string{`job        T1: j1 FAILED version 3 reason="bad_hash"`, `signals    T1: new A, B`, `signals    T1: new C`, `signals    T1: new D`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
