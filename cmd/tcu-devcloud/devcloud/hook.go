package devcloud

import (
	"bytes"
	"crypto/tls"
	"slices"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Identity kinds of a connection.
const (
	kindPlain = "plain" // plain listener: unrestricted (local development)
)

// ConnectEvent is one CONNECT received by the broker.
type ConnectEvent struct {
	ClientID string
	Time     time.Time
	Refused  bool
}

// ClientStats are per client ID counters, cumulative over connections.
type ClientStats struct {
	Connects      int
	Publishes     int // inbound publishes accepted
	MaxPerSecond  int // most publishes (in + out) in any sliding second
	MaxInflight   int // most unacknowledged inbound QoS 1 publishes
	Discarded     int // publishes dropped for exceeding the rate
	Disconnects   int // forced by a limit or an ACL violation
	LastViolation string
}

// clientState is the broker's view of one connection.
type clientState struct {
	kind     string // kindPlain, KindThing or KindClaim
	thing    string
	mu       sync.Mutex
	recent   []time.Time // publishes in the last second
	held     int         // PUBACKs delayed or withheld
	subs     int
	withheld []packets.Packet
}

// hook is the mochi hook implementing identity, ACL, limits and faults.
type hook struct {
	mqtt.HookBase
	c *Cloud

	mu      sync.Mutex
	clients map[*mqtt.Client]*clientState // guarded by mu; connected clients
	// sessions keeps the identity of every client ID that connected, so
	// that messages for an offline persistent session pass the ACL and
	// are queued for it.
	sessions map[string]identity // guarded by mu
}

// identity is what a certificate allows.
type identity struct{ kind, thing string }

func (h *hook) ID() string { return "devcloud" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnDisconnect,
		mqtt.OnPublish, mqtt.OnPublished, mqtt.OnSubscribe, mqtt.OnPacketSent}, []byte{b})
}

func (h *hook) reset() {
	h.mu.Lock()
	clear(h.clients)
	clear(h.sessions) // a restarted broker has no sessions
	h.mu.Unlock()
}

func (h *hook) state(cl *mqtt.Client) *clientState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.clients[cl]
}

// OnConnect records the attempt and applies the refuse-connects fault.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	refuse := h.c.faults.refusing()
	h.c.recordConnect(cl.ID, refuse)
	if refuse {
		return packets.ErrServerUnavailable // connection closed without CONNACK
	}
	return nil
}

// OnConnectAuthenticate identifies the certificate: thing certificates
// must connect with their thing name as client ID.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	st := &clientState{kind: kindPlain}
	if tc, ok := cl.Net.Conn.(*tls.Conn); ok {
		certs := tc.ConnectionState().PeerCertificates
		if len(certs) == 0 {
			return false
		}
		leaf := certs[0]
		switch thing, ok := h.c.activated(leaf.Raw); {
		case ok:
			st.kind, st.thing = KindThing, thing
		case slices.Contains(leaf.Subject.OrganizationalUnit, KindThing):
			st.kind, st.thing = KindThing, leaf.Subject.CommonName
		case slices.Contains(leaf.Subject.OrganizationalUnit, KindClaim):
			st.kind = KindClaim
		default:
			return false
		}
		if st.kind == KindThing && cl.ID != st.thing {
			h.c.log.Warn("devcloud connect refused: client id is not the thing name", "client_id", cl.ID, "thing", st.thing)
			return false
		}
	}
	h.mu.Lock()
	h.clients[cl] = st
	if h.sessions == nil {
		h.sessions = make(map[string]identity)
	}
	h.sessions[cl.ID] = identity{kind: st.kind, thing: st.thing}
	h.mu.Unlock()
	h.c.clientStats(cl.ID, func(s *ClientStats) { s.Connects++ })
	return true
}

// OnACLCheck applies the per-certificate topic permissions. A client
// that is offline is checked with the identity its session connected with.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	h.mu.Lock()
	id, known := h.sessions[cl.ID]
	if st := h.clients[cl]; st != nil {
		id, known = identity{kind: st.kind, thing: st.thing}, true
	}
	h.mu.Unlock()
	if !known {
		return false
	}
	if rest, basic := BasicIngest(topic); basic || strings.HasPrefix(topic, "$aws/rules/") {
		if !write || !basic { // Basic Ingest is publish only
			return false
		}
		topic = rest // permitted as the topic the rule sees
	}
	if id.kind == kindPlain {
		// A thing's Jobs topics belong to the connection whose client ID
		// is the thing name, as the policy variable
		// ${iot:Connection.Thing.ThingName} makes them on AWS.
		if thing, ok := jobsThing(topic); ok && thing != cl.ID {
			h.c.clientStats(cl.ID, func(s *ClientStats) { s.LastViolation = "not authorized: " + topic })
			return false
		}
	}
	ok := allowed(id.kind, id.thing, topic)
	if !ok && write {
		h.c.clientStats(cl.ID, func(s *ClientStats) { s.LastViolation = "not authorized: " + topic })
	}
	return ok
}

// allowed reports whether a connection of kind (and thing) may use topic
// (a topic or a filter).
func allowed(kind, thing, topic string) bool {
	switch kind {
	case kindPlain:
		return true
	case KindThing:
		for _, p := range []string{"dt/tcu/", "cmd/tcu/", "$aws/things/", "$aws/commands/things/"} {
			if strings.HasPrefix(topic, p+thing+"/") {
				return true
			}
		}
		// Certificate renewal over the thing's own identity, as an AWS IoT
		// policy allowing CreateCertificateFromCsr and RegisterThing does.
		// Not CreateKeysAndCertificate, and answers go only to the
		// requesting client (fleetprov publishes with PublishTo).
		for _, p := range []string{"$aws/certificates/create-from-csr/", "$aws/provisioning-templates/"} {
			if strings.HasPrefix(topic, p) {
				return true
			}
		}
	case KindClaim:
		for _, p := range []string{"$aws/certificates/create/", "$aws/certificates/create-from-csr/", "$aws/provisioning-templates/"} {
			if strings.HasPrefix(topic, p) {
				return true
			}
		}
	}
	return false
}

// jobsThing returns the thing of a Jobs topic or filter
// ($aws/things/<thing>/jobs/…).
func jobsThing(topic string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, "$aws/things/")
	if !ok {
		return "", false
	}
	thing, rest, _ := strings.Cut(rest, "/")
	if thing == "#" {
		return thing, true
	}
	if rest != "jobs" && !strings.HasPrefix(rest, "jobs/") && rest != "#" && rest != "+" && !strings.HasPrefix(rest, "+/") {
		return "", false
	}
	return thing, true
}

func (h *hook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	h.mu.Lock()
	delete(h.clients, cl)
	h.mu.Unlock()
}

// OnSubscribe enforces the filters-per-SUBSCRIBE and subscription limits
// by disconnecting, as AWS IoT Core does.
func (h *hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	st := h.state(cl)
	if st == nil || cl.Net.Inline {
		return pk
	}
	st.mu.Lock()
	st.subs += len(pk.Filters)
	n := st.subs
	st.mu.Unlock()
	switch {
	case len(pk.Filters) > h.c.limits.MaxFiltersPerSubscribe:
		h.violate(cl, "too many filters in one SUBSCRIBE")
	case n > h.c.limits.MaxSubscriptions:
		h.violate(cl, "too many subscriptions")
	}
	return pk
}

// OnPublish enforces payload size, retained-$ and rate limits, and
// applies the PUBACK faults.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	st := h.state(cl)
	if cl.Net.Inline || st == nil {
		return pk, nil
	}
	switch {
	case len(pk.Payload) > h.c.limits.MaxPayload:
		h.violate(cl, "payload larger than the limit")
		return pk, packets.ErrRejectPacket
	case pk.FixedHeader.Retain && strings.HasPrefix(pk.TopicName, "$"):
		h.violate(cl, "retained publish on a reserved topic")
		return pk, packets.ErrRejectPacket
	case pk.FixedHeader.Qos > 1:
		return pk, packets.ErrRejectPacket // AWS: QoS 2 gets no PUBACK
	}
	if !h.countRate(cl, st) {
		return pk, packets.ErrRejectPacket // discarded: no PUBACK, not delivered
	}
	h.c.clientStats(cl.ID, func(s *ClientStats) { s.Publishes++ })
	if pk.FixedHeader.Qos == 0 {
		return pk, nil
	}
	return h.c.faults.onPublish(cl, st, pk)
}

// countRate counts a publish in the sliding one-second window; it reports
// false when the publish exceeds the rate limit.
func (h *hook) countRate(cl *mqtt.Client, st *clientState) bool {
	now := time.Now()
	st.mu.Lock()
	cut := 0
	for cut < len(st.recent) && now.Sub(st.recent[cut]) >= time.Second {
		cut++
	}
	st.recent = append(st.recent[:0], st.recent[cut:]...)
	st.recent = append(st.recent, now)
	n := len(st.recent)
	st.mu.Unlock()
	over := n > h.c.limits.MaxPublishRate
	h.c.clientStats(cl.ID, func(s *ClientStats) {
		s.MaxPerSecond = max(s.MaxPerSecond, n)
		if over {
			s.Discarded++
		}
	})
	return !over
}

// OnPublished dispatches a client's publish to in-process handlers.
func (h *hook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline {
		return
	}
	h.c.router.dispatch(cl.ID, pk.TopicName, pk.Payload)
}

// OnPacketSent counts publishes sent to a client against its rate.
func (h *hook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, b []byte) {
	if pk.FixedHeader.Type != packets.Publish || cl.Net.Inline {
		return
	}
	if st := h.state(cl); st != nil {
		h.countRate(cl, st)
	}
}

// violate disconnects a client that broke a limit or a permission.
func (h *hook) violate(cl *mqtt.Client, why string) {
	h.c.log.Warn("devcloud disconnecting client", "client_id", cl.ID, "reason", why)
	h.c.clientStats(cl.ID, func(s *ClientStats) { s.Disconnects++; s.LastViolation = why })
	if srv := h.c.current(); srv != nil {
		_ = srv.DisconnectClient(cl, packets.ErrQuotaExceeded)
	}
}
