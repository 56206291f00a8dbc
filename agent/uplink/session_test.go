package uplink_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/agent/uplink/uplinktest"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// inbox records inbound messages.
type inbox struct {
	mu     sync.Mutex
	topics []string
}

func (i *inbox) handle(m uplink.Message) {
	i.mu.Lock()
	i.topics = append(i.topics, m.Topic)
	i.mu.Unlock()
	m.Ack()
}

func (i *inbox) count() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return len(i.topics)
}

// TestCommandsQueuedWhileOffline: with a persistent session a command
// sent while the device is offline is delivered after it reconnects, and
// the session did not need to re-subscribe.
func TestCommandsQueuedWhileOffline(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	var in inbox
	s, err := uplink.New(uplink.Options{Config: fastConfig(cloud.Addr()), Thing: "TCU-C", Queue: uplinktest.NewQueue(),
		Subscriptions: []string{"cmd/tcu/TCU-C/request/+"}, Handler: in.handle, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	runSession(t, s)
	eventually(t, 10*time.Second, "connected", s.Connected)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cloud.SendCommand(ctx, "TCU-C", "door.lock", nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "first command", func() bool { return in.count() == 1 })

	cloud.Faults().RefuseConnects(true)
	cloud.Faults().DropConnections()
	eventually(t, 10*time.Second, "offline", func() bool { return !s.Connected() })
	if _, err := cloud.SendCommand(ctx, "TCU-C", "door.unlock", nil); err != nil {
		t.Fatal(err)
	}
	cloud.Faults().RefuseConnects(false)
	eventually(t, 20*time.Second, "command sent while offline", func() bool { return in.count() == 2 })
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, topic := range in.topics {
		if !strings.HasPrefix(topic, "cmd/tcu/TCU-C/request/") {
			t.Errorf("inbound topic %q", topic)
		}
	}
}

// TestPublishAPI: Publish waits for the PUBACK online and fails with
// ErrNotConnected offline; retained publishes and bad topics are refused.
func TestPublishAPI(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	got := make(chan string, 4)
	cloud.Subscribe("$aws/things/TCU-P/shadow/update", func(_ string, b []byte) { got <- string(b) })
	s, err := uplink.New(uplink.Options{Config: fastConfig(cloud.Addr()), Thing: "TCU-P", Queue: uplinktest.NewQueue(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Publish(ctx, "$aws/things/TCU-P/shadow/update", []byte(`{}`)); err == nil || !strings.Contains(err.Error(), uplink.ErrNotConnected.Error()) {
		t.Errorf("Publish offline = %v, want ErrNotConnected", err)
	}
	runSession(t, s)
	eventually(t, 10*time.Second, "connected", s.Connected)
	if err := s.Publish(ctx, "$aws/things/TCU-P/shadow/update", []byte(`{"state":{}}`)); err != nil {
		t.Fatal(err)
	}
	if b := <-got; b != `{"state":{}}` {
		t.Errorf("broker got %s", b)
	}
	if err := s.Publish(ctx, "dt/tcu/+/x", []byte(`{}`)); err == nil {
		t.Error("publish to a wildcard topic accepted")
	}
}

// TestStatusAndWill: the retained status is online while connected, the
// broker publishes the offline will when the connection drops, and a
// clean shutdown publishes offline itself.
func TestStatusAndWill(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	obs, err := uplink.DialConn(ctx, fastConfig(cloud.Addr()), tls.Certificate{}, "observer", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	var mu sync.Mutex
	var states []string
	last := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(states) == 0 {
			return ""
		}
		return states[len(states)-1]
	}
	if err := obs.Subscribe(ctx, "dt/tcu/TCU-ST/status", func(_ string, b []byte) {
		var st struct{ Status string }
		_ = json.Unmarshal(b, &st)
		mu.Lock()
		states = append(states, st.Status)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	s, err := uplink.New(uplink.Options{Config: fastConfig(cloud.Addr()), Thing: "TCU-ST", Queue: uplinktest.NewQueue(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop := runSession(t, s)
	eventually(t, 10*time.Second, "online", func() bool { return last() == "online" })
	cloud.Faults().RefuseConnects(true)
	if err := cloud.Disconnect("TCU-ST"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "offline will", func() bool { return last() == "offline" })
	cloud.Faults().RefuseConnects(false)
	eventually(t, 10*time.Second, "online again", func() bool { return last() == "online" })
	stop()
	eventually(t, 10*time.Second, "offline on shutdown", func() bool { return last() == "offline" })
}

// TestManySubscriptionsChunked: 20 filters are sent 8 per SUBSCRIBE (the
// devcloud disconnects on more) and all work; more than 50 are refused.
func TestManySubscriptionsChunked(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	var filters []string
	for i := range 20 {
		filters = append(filters, fmt.Sprintf("cmd/tcu/TCU-SUB/f%02d/+", i))
	}
	var in inbox
	s, err := uplink.New(uplink.Options{Config: fastConfig(cloud.Addr()), Thing: "TCU-SUB", Queue: uplinktest.NewQueue(),
		Subscriptions: filters, Handler: in.handle, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	runSession(t, s)
	eventually(t, 10*time.Second, "connected", s.Connected)
	for i := range 20 {
		if err := cloud.Publish(fmt.Sprintf("cmd/tcu/TCU-SUB/f%02d/x", i), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "a message on every filter", func() bool { return in.count() == 20 })
	if st := cloud.Stats("TCU-SUB"); st.Disconnects != 0 {
		t.Errorf("broker disconnected the session: %+v", st)
	}
	for i := 20; i < 51; i++ {
		filters = append(filters, fmt.Sprintf("cmd/tcu/TCU-SUB/f%02d/+", i))
	}
	if _, err := uplink.New(uplink.Options{Config: fastConfig(cloud.Addr()), Thing: "TCU-SUB", Queue: uplinktest.NewQueue(),
		Subscriptions: filters, Logger: testLogger(t)}); err == nil {
		t.Error("51 subscriptions accepted")
	}
}

// TestConnectSpacing: while the broker refuses, attempts by one client ID
// are never less than 1 s apart (AWS: 1 CONNECT/s per client ID).
func TestConnectSpacing(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	cloud.Faults().RefuseConnects(true)
	s, err := uplink.New(uplink.Options{Config: fastConfig(cloud.Addr()), Thing: "TCU-SP", Queue: uplinktest.NewQueue(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop := runSession(t, s)
	eventually(t, 15*time.Second, "4 refused attempts", func() bool { return s.Stats().ConnectFailures >= 4 })
	stop()
	var prev time.Time
	for _, ev := range cloud.Connects() {
		if ev.ClientID != "TCU-SP" {
			continue
		}
		if !prev.IsZero() && ev.Time.Sub(prev) < time.Second {
			t.Errorf("connects %v apart", ev.Time.Sub(prev))
		}
		prev = ev.Time
	}
}

// TestManualAckRedelivery: inbound messages arrive in publish order, and
// one the handler never acknowledged is redelivered (DUP set) after a
// reconnect, while acknowledged ones are not.
func TestManualAckRedelivery(t *testing.T) {
	cloud := startCloud(t, devcloud.Limits{})
	var (
		mu   sync.Mutex
		got  []uplink.Message
		hold = map[string]bool{"cmd/tcu/TCU-A/request/held": true}
	)
	s, err := uplink.New(uplink.Options{Config: fastConfig(cloud.Addr()), Thing: "TCU-A", Queue: uplinktest.NewQueue(),
		Subscriptions: []string{"cmd/tcu/TCU-A/request/+"}, Logger: testLogger(t),
		Handler: func(m uplink.Message) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, m)
			if !hold[m.Topic] || m.Duplicate {
				m.Ack()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	runSession(t, s)
	eventually(t, 10*time.Second, "connected", s.Connected)
	topics := []string{"cmd/tcu/TCU-A/request/a", "cmd/tcu/TCU-A/request/held", "cmd/tcu/TCU-A/request/b"}
	for i := 0; i < 20; i++ {
		topics = append(topics, fmt.Sprintf("cmd/tcu/TCU-A/request/o%02d", i))
	}
	for _, tp := range topics {
		if err := cloud.Publish(tp, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	eventually(t, 10*time.Second, "all messages", func() bool { return count() == len(topics) })
	mu.Lock()
	for i, m := range got {
		if m.Topic != topics[i] {
			t.Errorf("message %d is %s, want %s (arrival order)", i, m.Topic, topics[i])
		}
	}
	mu.Unlock()
	cloud.Faults().DropConnections()
	eventually(t, 20*time.Second, "the unacknowledged message again", func() bool { return count() == len(topics)+1 })
	// Give a wrong redelivery of an acknowledged one time to show up.
	if err := cloud.Publish("cmd/tcu/TCU-A/request/last", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a later message", func() bool { return count() == len(topics)+2 })
	mu.Lock()
	defer mu.Unlock()
	if m := got[len(topics)]; m.Topic != "cmd/tcu/TCU-A/request/held" || !m.Duplicate {
		t.Errorf("redelivered %s (dup %v), want the held message with DUP", m.Topic, m.Duplicate)
	}
}
