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
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startCloud(t *testing.T, limits devcloud.Limits) *devcloud.Cloud {
	t.Helper()
	c, err := devcloud.New(devcloud.Options{Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", Limits: limits,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func plainConfig(addr string) uplink.Config {
	cfg := uplink.DefaultConfig()
	cfg.Broker, cfg.AllowPlaintext = "tcp://"+addr, true
	cfg.AckTimeout = uplink.Duration(3 * time.Second)
	cfg.ConnectTimeout = uplink.Duration(3 * time.Second)
	return cfg
}

func dial(t *testing.T, c *devcloud.Cloud, clientID string) *uplink.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := uplink.DialConn(ctx, plainConfig(c.Addr()), tls.Certificate{}, clientID, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSendCommand: a request reaches the device in the agreed format and
// its responses come back on the channel, which closes after the final one.
func TestSendCommand(t *testing.T) {
	c := startCloud(t, devcloud.Limits{})
	dev := dial(t, c, "TCU-1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan devcloud.Request, 1)
	err := dev.Subscribe(ctx, "cmd/tcu/TCU-1/request/+", func(topic string, b []byte) {
		var req devcloud.Request
		if err := json.Unmarshal(b, &req); err != nil || !strings.HasSuffix(topic, "/"+req.ID) {
			t.Errorf("bad request on %s: %s", topic, b)
			return
		}
		got <- req
		for _, st := range []string{devcloud.StatusInProgress, devcloud.StatusSucceeded} {
			resp, _ := json.Marshal(devcloud.Response{ID: req.ID, Device: req.Device, Status: st, ReasonCode: "ok", TS: time.Now().UnixMilli()})
			go dev.Publish(ctx, devcloud.ResponseTopic("TCU-1", req.ID), resp) //nolint:errcheck // checked by the receiver
			time.Sleep(20 * time.Millisecond)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := c.SendCommand(ctx, "TCU-1", "door.lock", nil)
	if err != nil {
		t.Fatal(err)
	}
	var statuses []string
	for r := range ch {
		statuses = append(statuses, r.Status)
	}
	if diff := cmp.Diff([]string{"IN_PROGRESS", "SUCCEEDED"}, statuses); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	req := <-got
	if req.Name != "door.lock" || req.Device != "TCU-1" || req.ValidMS != 30000 || len(req.ID) != 36 || req.Params == nil {
		t.Errorf("request = %+v", req)
	}
}

// TestSendCommandContextEnds: without a response the channel closes when
// ctx ends.
func TestSendCommandContextEnds(t *testing.T) {
	c := startCloud(t, devcloud.Limits{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	ch, err := c.SendCommand(ctx, "TCU-NOBODY", "door.unlock", nil)
	if err != nil {
		t.Fatal(err)
	}
	for range ch {
		t.Error("unexpected response")
	}
}

// TestLimitsDisconnect: an oversize publish and a SUBSCRIBE with more
// than 8 filters close the connection, as on AWS IoT Core.
func TestLimitsDisconnect(t *testing.T) {
	c := startCloud(t, devcloud.Limits{MaxPayload: 2048})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn := dial(t, c, "TCU-BIG")
	if err := conn.Publish(ctx, "dt/tcu/TCU-BIG/telemetry", make([]byte, 4096)); err == nil {
		t.Error("oversize publish acknowledged")
	}
	waitFor(t, "disconnect", func() bool { return c.Stats("TCU-BIG").Disconnects == 1 })
	if v := c.Stats("TCU-BIG").LastViolation; !strings.Contains(v, "payload") {
		t.Errorf("violation = %q", v)
	}

	o := mqtt.NewClientOptions().AddBroker("tcp://" + c.Addr()).SetClientID("TCU-SUBS").SetAutoReconnect(false)
	lost := make(chan struct{})
	o.SetConnectionLostHandler(func(mqtt.Client, error) { close(lost) })
	pc := mqtt.NewClient(o)
	if tok := pc.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer pc.Disconnect(0)
	filters := map[string]byte{}
	for i := range 9 {
		filters["dt/tcu/TCU-SUBS/f"+string(rune('a'+i))] = 1
	}
	pc.SubscribeMultiple(filters, nil)
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Error("9 filters in one SUBSCRIBE did not close the connection")
	}
}

// TestFaults: refused connects fail, dropped connections are noticed,
// delayed PUBACKs arrive late but arrive.
func TestFaults(t *testing.T) {
	c := startCloud(t, devcloud.Limits{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.Faults().RefuseConnects(true)
	if conn, err := uplink.DialConn(ctx, plainConfig(c.Addr()), tls.Certificate{}, "TCU-R", slog.New(slog.DiscardHandler)); err == nil {
		conn.Close()
		t.Error("connect succeeded while refusing")
	}
	c.Faults().RefuseConnects(false)
	conn := dial(t, c, "TCU-R")

	c.Faults().DelayPubacks(300 * time.Millisecond)
	start := time.Now()
	if err := conn.Publish(ctx, "dt/tcu/TCU-R/telemetry", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("PUBACK after %v, want ≥ 300ms", d)
	}
	c.Faults().DelayPubacks(0)

	c.Faults().DropConnections()
	if err := conn.Publish(ctx, "dt/tcu/TCU-R/telemetry", []byte(`{}`)); err == nil {
		t.Error("publish on a dropped connection succeeded")
	}
	events := c.Connects()
	if len(events) != 2 || !events[0].Refused || events[1].Refused {
		t.Errorf("connect timeline = %+v", events)
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"dt/tcu/+/telemetry", "dt/tcu/T1/telemetry", true},
		{"dt/tcu/+/telemetry", "dt/tcu/T1/events", false},
		{"dt/tcu/#", "dt/tcu/T1/a/b", true},
		{"dt/tcu/#", "dt/tcu", true},
		{"#", "$aws/things/T1/shadow/update", false},
		{"$aws/things/+/shadow/update", "$aws/things/T1/shadow/update", true},
		{"a/b", "a/b/c", false},
	}
	for _, tt := range tests {
		if got := devcloud.Match(tt.filter, tt.topic); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}
