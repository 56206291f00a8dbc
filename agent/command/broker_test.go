package command_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/tcu-agent/tcu-agent/agent/command"
	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

// broker is an in-process MQTT broker on loopback with two clients: the
// agent side (subscribed to the engine's topics, publishing responses) and
// the backend side (publishing requests, collecting final responses).
type broker struct {
	srv     *mqtt.Server
	agent   paho.Client
	backend paho.Client

	mu     sync.Mutex
	finals map[string]chan time.Time // guarded by mu; waiters by id
	got    []command.Response        // guarded by mu; final responses received
}

func newBroker(tb testing.TB) *broker {
	tb.Helper()
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(allowAll), nil); err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewNet("loopback", ln)); err != nil {
		tb.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		tb.Fatal(err)
	}
	b := &broker{srv: srv, finals: map[string]chan time.Time{}}
	dial := func(id string) paho.Client {
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + ln.Addr().String()).SetClientID(id))
		if tok := c.Connect(); !tok.WaitTimeout(waitLong) || tok.Error() != nil {
			tb.Fatalf("connect %s: %v", id, tok.Error())
		}
		return c
	}
	b.agent, b.backend = dial(thing), dial("backend")
	tok := b.backend.Subscribe("cmd/tcu/"+thing+"/response/+", 1, func(_ paho.Client, m paho.Message) {
		var r command.Response
		if json.Unmarshal(m.Payload(), &r) != nil || !r.Final() {
			return
		}
		b.mu.Lock()
		ch := b.finals[r.ID]
		b.got = append(b.got, r)
		b.mu.Unlock()
		if ch != nil {
			ch <- time.Now()
		}
	})
	if !tok.WaitTimeout(waitLong) || tok.Error() != nil {
		tb.Fatalf("subscribe: %v", tok.Error())
	}
	tb.Cleanup(func() {
		b.agent.Disconnect(100)
		b.backend.Disconnect(100)
		srv.Close()
	})
	return b
}

// Respond publishes resp like the agent's uplink would (QoS 1).
func (b *broker) Respond(ctx context.Context, resp command.Response) error {
	p, err := resp.Payload()
	if err != nil {
		return err
	}
	tok := b.agent.Publish(resp.Topic, 1, false, p)
	tok.WaitTimeout(waitLong)
	return tok.Error()
}

// attach subscribes eng to its request topics.
func (b *broker) attach(tb testing.TB, eng *command.Engine) {
	filters := map[string]byte{}
	for _, f := range eng.Topics() {
		filters[f] = 1
	}
	tok := b.agent.SubscribeMultiple(filters, func(_ paho.Client, m paho.Message) {
		eng.Handle(context.Background(), m.Topic(), m.Payload())
	})
	if !tok.WaitTimeout(waitLong) || tok.Error() != nil {
		tb.Fatalf("subscribe: %v", tok.Error())
	}
}

// roundTrip publishes r and returns the time until its final response.
func (b *broker) roundTrip(tb testing.TB, r command.Request) time.Duration {
	ch := make(chan time.Time, 4)
	b.mu.Lock()
	b.finals[r.ID] = ch
	b.mu.Unlock()
	start := time.Now()
	b.backend.Publish(requestTopic(r.ID), 1, false, mustJSON(tb, r))
	select {
	case at := <-ch:
		return at.Sub(start)
	case <-time.After(waitLong):
		tb.Fatalf("no final response for %s", r.ID)
		return 0
	}
}

// allowAll lets every client connect, publish and subscribe.
type allowAll struct{ mqtt.HookBase }

func (*allowAll) ID() string { return "allow-all" }

func (*allowAll) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (*allowAll) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (*allowAll) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

// BenchmarkBrokerToFinalResponse: backend publish → final response received
// by the backend, through an in-process broker on loopback (QoS 1 both
// ways), alternating door.lock and door.unlock so every command really
// changes the lock state. "instant" confirms in the transmit call; "sim"
// is tcu-sim's body controller over the virtual bus with its default 300 ms
// response delay. The responder publishes directly (no durable buffer).
func BenchmarkBrokerToFinalResponse(b *testing.B) {
	names := []string{"door.lock", "door.unlock"}
	b.Run("instant", func(b *testing.B) {
		h := newHarness(b, nil)
		br := newBroker(b)
		h.restartWith(br)
		br.attach(b, h.eng)
		lat := make([]time.Duration, 0, b.N)
		for i := range b.N {
			lat = append(lat, br.roundTrip(b, h.req(idN("mq", i), names[i%2])))
		}
		report(b, "final", lat)
	})
	b.Run("sim", func(b *testing.B) {
		br := newBroker(b)
		r := newSimRigWith(b, sim.Knobs{Delay: sim.DefaultBodyDelay}, nil, br)
		br.attach(b, r.eng)
		time.Sleep(400 * time.Millisecond) // the standstill hold time
		lat := make([]time.Duration, 0, b.N)
		for i := range b.N {
			req := command.Request{ID: idN("sim", i), Device: thing, Name: names[i%2],
				IssuedAt: time.Now().UnixMilli(), ValidMS: 30_000}
			lat = append(lat, br.roundTrip(b, req))
		}
		report(b, "final", lat)
	})
}

// TestBrokerAndSimEndToEnd: requests published by a backend through a
// loopback broker run against tcu-sim's body controller; each final
// response reaches the backend SUCCEEDED with BODY_COMMAND frames on the bus.
func TestBrokerAndSimEndToEnd(t *testing.T) {
	t.Parallel()
	br := newBroker(t)
	r := newSimRigWith(t, sim.Knobs{}, nil, br)
	br.attach(t, r.eng)
	time.Sleep(400 * time.Millisecond) // the standstill hold time
	for i, name := range []string{"door.lock", "door.unlock", "ignition.disable", "ignition.enable"} {
		before := r.commandFrames()
		req := command.Request{ID: idN("e2e", i), Device: thing, Name: name, IssuedAt: time.Now().UnixMilli(), ValidMS: 30_000}
		br.roundTrip(t, req)
		if r.commandFrames() == before {
			t.Errorf("%s: no BODY_COMMAND frame on the bus", name)
		}
	}
	br.mu.Lock()
	defer br.mu.Unlock()
	if len(br.got) != 4 {
		t.Fatalf("backend got %d final responses, want 4", len(br.got))
	}
	for _, resp := range br.got {
		checkFinal(t, resp, command.StatusSucceeded, command.ReasonOK)
	}
}
