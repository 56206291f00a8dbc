package devcloud

import (
	"fmt"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// router dispatches client publishes to in-process handlers.
type router struct {
	mu     sync.Mutex
	next   int
	routes map[int]route // guarded by mu
}

type route struct {
	filter string
	fn     func(clientID, topic string, payload []byte)
}

func (r *router) init() { r.routes = make(map[int]route) }

func (r *router) add(filter string, fn func(clientID, topic string, payload []byte)) func() {
	r.mu.Lock()
	r.next++
	id := r.next
	r.routes[id] = route{filter: filter, fn: fn}
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.routes, id)
		r.mu.Unlock()
	}
}

func (r *router) dispatch(clientID, topic string, payload []byte) {
	if rest, ok := BasicIngest(topic); ok {
		topic = rest // the rule sees the topic without $aws/rules/<rule>/
	}
	r.mu.Lock()
	var fns []func(string, string, []byte)
	for _, rt := range r.routes {
		if Match(rt.filter, topic) {
			fns = append(fns, rt.fn)
		}
	}
	r.mu.Unlock()
	for _, fn := range fns {
		fn(clientID, topic, payload)
	}
}

// BasicIngest splits an AWS IoT Basic Ingest topic
// "$aws/rules/<rule>/<topic>" and returns <topic>. Such publishes go
// straight to the rule: handlers see <topic>, and no MQTT client can
// subscribe to them.
func BasicIngest(topic string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, "$aws/rules/")
	if !ok {
		return "", false
	}
	rule, inner, ok := strings.Cut(rest, "/")
	if !ok || rule == "" || inner == "" {
		return "", false
	}
	return inner, true
}

// Match reports whether topic matches the MQTT filter. As the spec says,
// a wildcard first level does not match a topic starting with '$'.
func Match(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	fl, tl := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fl {
		if f == "#" {
			return true
		}
		if i >= len(tl) || (f != "+" && f != tl[i]) {
			return false
		}
	}
	return len(fl) == len(tl)
}

// Subscribe calls fn for every client publish matching filter; fn must
// not block for long. The returned func removes the subscription.
func (c *Cloud) Subscribe(filter string, fn func(topic string, payload []byte)) (cancel func()) {
	return c.router.add(filter, func(_, topic string, payload []byte) { fn(topic, payload) })
}

// Handle calls fn for every client publish matching filter, with the
// publisher's client ID. It implements fleetprov.Broker.
func (c *Cloud) Handle(filter string, fn func(clientID, topic string, payload []byte)) {
	c.router.add(filter, fn)
}

func (c *Cloud) recordConnect(clientID string, refused bool) {
	c.mu.Lock()
	c.timeline = append(c.timeline, ConnectEvent{ClientID: clientID, Time: time.Now(), Refused: refused})
	c.mu.Unlock()
}

// Connects returns every CONNECT received so far, in order.
func (c *Cloud) Connects() []ConnectEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]ConnectEvent(nil), c.timeline...)
}

func (c *Cloud) clientStats(clientID string, fn func(*ClientStats)) {
	c.mu.Lock()
	s := c.stats[clientID]
	if s == nil {
		s = &ClientStats{}
		c.stats[clientID] = s
	}
	fn(s)
	c.mu.Unlock()
}

// Stats returns the counters of a client ID.
func (c *Cloud) Stats(clientID string) ClientStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.stats[clientID]; s != nil {
		return *s
	}
	return ClientStats{}
}

// PublishTo delivers payload on topic only to the connection of
// clientID, if it is subscribed to a matching filter, as AWS IoT answers
// provisioning requests only on the requesting connection. It implements
// fleetprov.ClientPublisher. Delivery is QoS 0 (the broker may downgrade).
func (c *Cloud) PublishTo(clientID, topic string, payload []byte) error {
	c.hook.mu.Lock()
	var target *mqtt.Client
	for cl := range c.hook.clients {
		if cl.ID == clientID && !cl.Closed() {
			target = cl
		}
	}
	c.hook.mu.Unlock()
	if target == nil {
		return fmt.Errorf("publish to %s: not connected", clientID)
	}
	subscribed := false
	for f := range target.State.Subscriptions.GetAll() {
		subscribed = subscribed || Match(f, topic)
	}
	if !subscribed {
		return fmt.Errorf("publish to %s: not subscribed to %s", clientID, topic)
	}
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: topic, Payload: payload}
	if err := target.WritePacket(pk); err != nil {
		return fmt.Errorf("publish to %s: %w", clientID, err)
	}
	return nil
}

// replyTo delivers payload on topic only to the connection of clientID,
// subscribed or not, as AWS IoT sends Jobs accepted/rejected replies to
// the requesting connection. Delivery is QoS 0.
func (c *Cloud) replyTo(clientID, topic string, payload []byte) error {
	c.hook.mu.Lock()
	var target *mqtt.Client
	for cl := range c.hook.clients {
		if cl.ID == clientID && !cl.Closed() {
			target = cl
		}
	}
	c.hook.mu.Unlock()
	if target == nil {
		return fmt.Errorf("reply to %s: not connected", clientID)
	}
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: topic, Payload: payload}
	if err := target.WritePacket(pk); err != nil {
		return fmt.Errorf("reply to %s: %w", clientID, err)
	}
	return nil
}
