package devcloud_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// device is a plain paho client acting as a thing.
type device struct {
	t      *testing.T
	thing  string
	client mqtt.Client
	msgs   chan mqtt.Message
	lost   chan struct{}
	kept   []mqtt.Message // received but not yet asked for
}

// take returns the first message (kept or new) for which ok is true,
// keeping the others.
func (d *device) take(what string, ok func(mqtt.Message) bool) mqtt.Message {
	d.t.Helper()
	for i, m := range d.kept {
		if ok(m) {
			d.kept = append(d.kept[:i], d.kept[i+1:]...)
			return m
		}
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-d.msgs:
			if ok(m) {
				return m
			}
			d.kept = append(d.kept, m)
		case <-deadline:
			d.t.Fatalf("no message: %s", what)
			return nil
		}
	}
}

func jobsCloud(t *testing.T, minute time.Duration) *devcloud.Cloud {
	t.Helper()
	c, err := devcloud.New(devcloud.Options{Addr: "127.0.0.1:0", JobsMinute: minute, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newDevice connects as clientID; every message received (subscribed or
// at the default handler) goes to msgs.
func newDevice(t *testing.T, c *devcloud.Cloud, clientID, thing string, filters ...string) *device {
	t.Helper()
	d := &device{t: t, thing: thing, msgs: make(chan mqtt.Message, 100), lost: make(chan struct{})}
	o := mqtt.NewClientOptions().AddBroker("tcp://" + c.Addr()).SetClientID(clientID).SetAutoReconnect(false).
		SetCleanSession(true).SetOrderMatters(true)
	o.SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { d.msgs <- m })
	o.SetConnectionLostHandler(func(mqtt.Client, error) { close(d.lost) })
	d.client = mqtt.NewClient(o)
	if tok := d.client.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { d.client.Disconnect(100) })
	for _, f := range filters {
		tok := d.client.Subscribe(f, 1, func(_ mqtt.Client, m mqtt.Message) { d.msgs <- m })
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", f, tok.Error())
		}
	}
	return d
}

func (d *device) prefix() string { return "$aws/things/" + d.thing + "/jobs/" }

// publish sends body (a JSON value or raw string) on prefix+api.
func (d *device) publish(api string, body any) {
	d.t.Helper()
	var p []byte
	switch b := body.(type) {
	case string:
		p = []byte(b)
	default:
		p, _ = json.Marshal(b)
	}
	tok := d.client.Publish(d.prefix()+api, 1, false, p)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		d.t.Fatalf("publish %s: %v", api, tok.Error())
	}
}

// await returns the next message on topic (others are dropped).
func (d *device) await(topic string) map[string]any {
	d.t.Helper()
	m := d.take(topic, func(m mqtt.Message) bool { return m.Topic() == topic })
	var v map[string]any
	if err := json.Unmarshal(m.Payload(), &v); err != nil {
		d.t.Fatalf("%s: %v", topic, err)
	}
	return v
}

// call publishes a request and returns ("accepted"|"rejected", body).
func (d *device) call(api string, body any) (string, map[string]any) {
	d.t.Helper()
	d.publish(api, body)
	m := d.take("reply to "+api, func(m mqtt.Message) bool {
		return m.Topic() == d.prefix()+api+"/accepted" || m.Topic() == d.prefix()+api+"/rejected"
	})
	kind := strings.TrimPrefix(m.Topic(), d.prefix()+api+"/")
	var v map[string]any
	if err := json.Unmarshal(m.Payload(), &v); err != nil {
		d.t.Fatalf("%s: %v", m.Topic(), err)
	}
	return kind, v
}

func (d *device) mustReject(api string, body any, code string) map[string]any {
	d.t.Helper()
	kind, v := d.call(api, body)
	if kind != "rejected" || v["code"] != code {
		d.t.Fatalf("%s %v: got %s %v, want rejected %s", api, body, kind, v, code)
	}
	return v
}

func (d *device) mustAccept(api string, body any) map[string]any {
	d.t.Helper()
	kind, v := d.call(api, body)
	if kind != "accepted" {
		d.t.Fatalf("%s %v: got %s %v, want accepted", api, body, kind, v)
	}
	return v
}

func num(v any) int64 { f, _ := v.(float64); return int64(f) }

func exec(v map[string]any) map[string]any { m, _ := v["execution"].(map[string]any); return m }

// TestJobLifecycle walks one execution QUEUED → IN_PROGRESS → SUCCEEDED
// with versions, clientToken echo, notify-next and the final state.
func TestJobLifecycle(t *testing.T) {
	c := jobsCloud(t, 0)
	d := newDevice(t, c, "T1", "T1", "$aws/things/T1/jobs/notify-next", "$aws/things/T1/jobs/notify")
	if _, v := d.call("$next/get", `{"clientToken":"c0"}`); exec(v) != nil || v["clientToken"] != "c0" {
		t.Fatalf("$next/get with nothing pending: %v", v)
	}
	doc := `{"type":"tcu.config.v1","version":"1"}`
	if err := c.Jobs().Create(devcloud.JobSpec{ID: "job-1", Things: []string{"T1"}, Document: []byte(doc)}); err != nil {
		t.Fatal(err)
	}
	n := exec(d.await(d.prefix() + "notify-next"))
	if n["jobId"] != "job-1" || n["status"] != "QUEUED" || num(n["versionNumber"]) != 1 || num(n["executionNumber"]) != 1 {
		t.Fatalf("notify-next: %v", n)
	}
	if jd, _ := n["jobDocument"].(map[string]any); jd["type"] != "tcu.config.v1" {
		t.Fatalf("notify-next document: %v", n["jobDocument"])
	}
	pend := d.mustAccept("get", `{}`)
	if q, _ := pend["queuedJobs"].([]any); len(q) != 1 {
		t.Fatalf("get: %v", pend)
	}
	v := d.mustAccept("start-next", map[string]any{"statusDetails": map[string]string{"step": "received"}, "clientToken": "c1"})
	e := exec(v)
	if e["status"] != "IN_PROGRESS" || num(e["versionNumber"]) != 2 || v["clientToken"] != "c1" || e["jobDocument"] == nil {
		t.Fatalf("start-next: %v", v)
	}
	if e := exec(d.mustAccept("$next/get", `{}`)); e["jobId"] != "job-1" || e["status"] != "IN_PROGRESS" {
		t.Fatalf("$next: %v", e)
	}
	// A second start-next leaves the IN_PROGRESS execution unchanged.
	if e := exec(d.mustAccept("start-next", `{"statusDetails":{"step":"other"}}`)); num(e["versionNumber"]) != 2 {
		t.Fatalf("second start-next changed the execution: %v", e)
	}
	rej := d.mustReject("job-1/update", map[string]any{"status": "IN_PROGRESS", "expectedVersion": 1, "clientToken": "c2"}, devcloud.CodeVersionMismatch)
	if st, _ := rej["executionState"].(map[string]any); num(st["versionNumber"]) != 2 || rej["clientToken"] != "c2" {
		t.Fatalf("VersionMismatch without the state or token: %v", rej)
	}
	v = d.mustAccept("job-1/update", map[string]any{"status": "IN_PROGRESS", "expectedVersion": 2,
		"statusDetails": map[string]string{"step": "applying"}, "includeJobExecutionState": true})
	if st, _ := v["executionState"].(map[string]any); num(st["versionNumber"]) != 3 || v["jobDocument"] != nil {
		t.Fatalf("update accepted: %v", v)
	}
	v = d.mustAccept("job-1/update", map[string]any{"status": "SUCCEEDED", "expectedVersion": 3,
		"statusDetails": map[string]string{"version": "1"}, "clientToken": "c3"})
	if v["clientToken"] != "c3" || v["executionState"] != nil {
		t.Fatalf("final update: %v", v)
	}
	if n := d.await(d.prefix() + "notify-next"); n["execution"] != nil {
		t.Fatalf("notify-next after the last job: %v", n)
	}
	rej = d.mustReject("job-1/update", `{"status":"IN_PROGRESS"}`, devcloud.CodeInvalidStateTransition)
	if st, _ := rej["executionState"].(map[string]any); st["status"] != "SUCCEEDED" {
		t.Fatalf("InvalidStateTransition state: %v", rej)
	}
	d.mustReject("job-1/update", `{"status":"SUCCEEDED"}`, devcloud.CodeInvalidStateTransition)
	d.mustReject("job-1/get", `{}`, devcloud.CodeTerminalStateReached)
	x, _ := c.Jobs().Execution("T1", "job-1")
	if x.Status != devcloud.JobSucceeded || x.VersionNumber != 4 || x.StatusDetails["version"] != "1" {
		t.Fatalf("final execution: %+v", x)
	}
}

// TestJobRejections: each malformed request gets the reference's code
// and changes nothing.
func TestJobRejections(t *testing.T) {
	c := jobsCloud(t, 0)
	if err := c.Jobs().Create(devcloud.JobSpec{ID: "j", Things: []string{"T1"}, Document: []byte(`{"a":1}`)}); err != nil {
		t.Fatal(err)
	}
	d := newDevice(t, c, "T1", "T1")
	long := strings.Repeat("x", 1025)
	tests := []struct {
		name, api string
		body      any
		code      string
	}{
		{"not json", "j/update", `{"status":`, devcloud.CodeInvalidJSON},
		{"json array", "j/update", `[1]`, devcloud.CodeInvalidJSON},
		{"no status", "j/update", `{}`, devcloud.CodeInvalidRequest},
		{"status QUEUED", "j/update", `{"status":"QUEUED"}`, devcloud.CodeInvalidRequest},
		{"status TIMED_OUT", "j/update", `{"status":"TIMED_OUT"}`, devcloud.CodeInvalidRequest},
		{"status number", "j/update", `{"status":1}`, devcloud.CodeInvalidRequest},
		{"details value not string", "j/update", `{"status":"IN_PROGRESS","statusDetails":{"a":1}}`, devcloud.CodeInvalidRequest},
		{"details key chars", "j/update", `{"status":"IN_PROGRESS","statusDetails":{"a b":"x"}}`, devcloud.CodeInvalidRequest},
		{"details value empty", "j/update", `{"status":"IN_PROGRESS","statusDetails":{"a":""}}`, devcloud.CodeInvalidRequest},
		{"details value too long", "j/update", map[string]any{"status": "IN_PROGRESS", "statusDetails": map[string]string{"a": long}}, devcloud.CodeInvalidRequest},
		{"details control char", "j/update", `{"status":"IN_PROGRESS","statusDetails":{"a":"x\ny"}}`, devcloud.CodeInvalidRequest},
		{"details format char", "j/update", `{"status":"IN_PROGRESS","statusDetails":{"a":"x\u200by"}}`, devcloud.CodeInvalidRequest},
		{"step timeout zero", "j/update", `{"status":"IN_PROGRESS","stepTimeoutInMinutes":0}`, devcloud.CodeInvalidRequest},
		{"step timeout too long", "j/update", `{"status":"IN_PROGRESS","stepTimeoutInMinutes":10081}`, devcloud.CodeInvalidRequest},
		{"client token too long", "j/update", map[string]any{"status": "IN_PROGRESS", "clientToken": strings.Repeat("t", 65)}, devcloud.CodeInvalidRequest},
		{"unknown job", "nope/update", `{"status":"IN_PROGRESS"}`, devcloud.CodeResourceNotFound},
		{"unknown job get", "nope/get", `{}`, devcloud.CodeResourceNotFound},
		{"wrong execution number", "j/update", `{"status":"IN_PROGRESS","executionNumber":2}`, devcloud.CodeResourceNotFound},
		{"wrong execution number get", "j/get", `{"executionNumber":7}`, devcloud.CodeResourceNotFound},
		{"$next update", "$next/update", `{"status":"IN_PROGRESS"}`, devcloud.CodeInvalidRequest},
		{"no such api", "j/cancel", `{}`, devcloud.CodeInvalidTopic},
		{"no such api deep", "j/update/x", `{}`, devcloud.CodeInvalidTopic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d.t = t
			d.mustReject(tt.api, tt.body, tt.code)
		})
	}
	d.t = t
	// A rejected request still echoes its clientToken, so that the device
	// can match the rejection.
	if v := d.mustReject("j/update", `{"status":"IN_PROGRESS","statusDetails":{"a":"x\ny"},"clientToken":"tok-1"}`, devcloud.CodeInvalidRequest); v["clientToken"] != "tok-1" {
		t.Fatalf("rejection without the clientToken: %v", v)
	}
	d.t = t
	x, _ := c.Jobs().Execution("T1", "j")
	if x.Status != devcloud.JobQueued || x.VersionNumber != 1 {
		t.Fatalf("rejected requests changed the execution: %+v", x)
	}
	// The describe of a queued job defaults to including the document.
	if e := exec(d.mustAccept("j/get", `{"clientToken":"g"}`)); e["jobDocument"] == nil {
		t.Fatalf("describe without the document: %v", e)
	}
	if e := exec(d.mustAccept("j/get", `{"includeJobDocument":false}`)); e["jobDocument"] != nil {
		t.Fatalf("describe with includeJobDocument false: %v", e)
	}
	// A device may reject a queued job directly.
	d.mustAccept("j/update", `{"status":"REJECTED","statusDetails":{"reason":"unsupported_type"}}`)
}

// TestJobOrderAndTimeout: IN_PROGRESS comes before QUEUED, a step timeout
// ends the execution TIMED_OUT and notify-next moves to the next job.
func TestJobOrderAndTimeout(t *testing.T) {
	c := jobsCloud(t, 50*time.Millisecond) // a "minute" of 50 ms
	d := newDevice(t, c, "T1", "T1", "$aws/things/T1/jobs/notify-next")
	for _, id := range []string{"a", "b"} {
		if err := c.Jobs().Create(devcloud.JobSpec{ID: id, Things: []string{"T1"}, Document: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if e := exec(d.await(d.prefix() + "notify-next")); e["jobId"] != "a" {
		t.Fatalf("first next: %v", e)
	}
	// Start b directly: it is IN_PROGRESS, so it becomes next.
	d.mustAccept("b/update", `{"status":"IN_PROGRESS","stepTimeoutInMinutes":2}`)
	if e := exec(d.await(d.prefix() + "notify-next")); e["jobId"] != "b" {
		t.Fatalf("next after starting b: %v", e)
	}
	if e := exec(d.await(d.prefix() + "notify-next")); e["jobId"] != "a" { // after b timed out
		t.Fatalf("next after the timeout: %v", e)
	}
	x, _ := c.Jobs().Execution("T1", "b")
	if x.Status != devcloud.JobTimedOut {
		t.Fatalf("b is %s, want TIMED_OUT", x.Status)
	}
	d.mustReject("b/update", `{"status":"SUCCEEDED"}`, devcloud.CodeInvalidStateTransition)
	// The job's in-progress timer also ends it.
	if err := c.Jobs().Create(devcloud.JobSpec{ID: "c", Things: []string{"T2"}, Document: []byte(`{}`), InProgressTimeout: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	d2 := newDevice(t, c, "T2", "T2", "$aws/things/T2/jobs/notify-next")
	d2.mustAccept("start-next", `{}`)
	if n := d2.await(d2.prefix() + "notify-next"); n["execution"] != nil {
		t.Fatalf("after the in-progress timeout: %v", n)
	}
	if x, _ := c.Jobs().Execution("T2", "c"); x.Status != devcloud.JobTimedOut {
		t.Fatalf("c is %s", x.Status)
	}
}

// TestJobsACL: a client may use only its own thing's Jobs topics; a
// publish on another thing's topic disconnects it, as AWS IoT does.
func TestJobsACL(t *testing.T) {
	c := jobsCloud(t, 0)
	if err := c.Jobs().Create(devcloud.JobSpec{ID: "j", Things: []string{"T1"}, Document: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	spy := newDevice(t, c, "T2", "T2")
	tok := spy.client.Subscribe("$aws/things/T1/jobs/notify-next", 1, nil)
	tok.WaitTimeout(5 * time.Second)
	if st, ok := tok.(*mqtt.SubscribeToken); !ok || st.Result()["$aws/things/T1/jobs/notify-next"] != 0x80 {
		t.Fatalf("subscribe to another thing's jobs: %v", tok.(*mqtt.SubscribeToken).Result())
	}
	spy.client.Publish("$aws/things/T1/jobs/j/update", 1, false, `{"status":"SUCCEEDED"}`)
	select {
	case <-spy.lost:
	case <-time.After(10 * time.Second):
		t.Fatal("publishing on another thing's jobs topic did not disconnect")
	}
	if x, _ := c.Jobs().Execution("T1", "j"); x.Status != devcloud.JobQueued {
		t.Fatalf("another client changed T1's job: %s", x.Status)
	}
}

// TestCancel: a canceled execution is final for the device.
func TestCancel(t *testing.T) {
	c := jobsCloud(t, 0)
	d := newDevice(t, c, "T1", "T1", "$aws/things/T1/jobs/notify")
	if err := c.Jobs().Create(devcloud.JobSpec{ID: "j", Things: []string{"T1"}, Document: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if n := d.await(d.prefix() + "notify"); !strings.Contains(mustJSON(n["jobs"]), `"QUEUED"`) {
		t.Fatalf("notify: %v", n)
	}
	if err := c.Jobs().Cancel("j"); err != nil {
		t.Fatal(err)
	}
	if n := d.await(d.prefix() + "notify"); mustJSON(n["jobs"]) != "{}" {
		t.Fatalf("notify after cancel: %v", n)
	}
	d.mustReject("j/update", `{"status":"SUCCEEDED"}`, devcloud.CodeInvalidStateTransition)
	if err := c.Jobs().Create(devcloud.JobSpec{ID: "j", Things: []string{"T1"}, Document: []byte(`{}`)}); err == nil {
		t.Fatal("a job id was reused")
	}
	for _, bad := range []devcloud.JobSpec{
		{ID: "bad id", Things: []string{"T1"}, Document: []byte(`{}`)},
		{ID: "k", Things: []string{"T1"}, Document: []byte(`[]`)},
		{ID: "k", Document: []byte(`{}`)},
		{ID: "k", Things: []string{"T1"}, Document: []byte(`{"x":"` + strings.Repeat("a", 32*1024) + `"}`)},
	} {
		if err := c.Jobs().Create(bad); err == nil {
			t.Errorf("created %q", bad.ID)
		}
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestJobsMutualTLS: a thing certificate speaks the Jobs API on its own
// topics over mutual TLS, and is disconnected for another thing's.
func TestJobsMutualTLS(t *testing.T) {
	c := startCloud(t, devcloud.Limits{})
	if err := c.Jobs().Create(devcloud.JobSpec{ID: "j", Things: []string{"T1", "T2"}, Document: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	id, err := c.CA().MintThing("T1")
	if err != nil {
		t.Fatal(err)
	}
	d := &device{t: t, thing: "T1", msgs: make(chan mqtt.Message, 100), lost: make(chan struct{})}
	o := mqtt.NewClientOptions().AddBroker("ssl://" + c.TLSAddr()).SetClientID("T1").SetAutoReconnect(false).
		SetTLSConfig(&tls.Config{RootCAs: c.CA().Pool(), Certificates: []tls.Certificate{id.Certificate}, MinVersion: tls.VersionTLS12})
	o.SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { d.msgs <- m })
	o.SetConnectionLostHandler(func(mqtt.Client, error) { close(d.lost) })
	d.client = mqtt.NewClient(o)
	if tok := d.client.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer d.client.Disconnect(100)
	// Replies reach the device without a subscription to them.
	if e := exec(d.mustAccept("start-next", `{"clientToken":"x"}`)); e["jobId"] != "j" || e["thingName"] != "T1" {
		t.Fatalf("start-next over mTLS: %v", e)
	}
	d.client.Publish("$aws/things/T2/jobs/j/update", 1, false, `{"status":"SUCCEEDED"}`)
	select {
	case <-d.lost:
	case <-time.After(10 * time.Second):
		t.Fatal("a thing certificate publishing on another thing's jobs topic was not disconnected")
	}
	if x, _ := c.Jobs().Execution("T2", "j"); x.Status != devcloud.JobQueued {
		t.Fatalf("T1 changed T2's execution: %s", x.Status)
	}
}
