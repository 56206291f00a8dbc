package devcloud

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// errDropped is the reason given to connections dropped by a fault.
var errDropped = errors.New("devcloud fault: connection dropped")

// Faults are the broker's fault knobs for tests. All methods are safe for
// concurrent use.
type Faults struct {
	c *Cloud

	mu       sync.Mutex
	refuse   bool                     // guarded by mu
	delay    time.Duration            // guarded by mu
	withhold bool                     // guarded by mu
	timers   map[*time.Timer]struct{} // guarded by mu
}

// RefuseConnects makes the broker close new connections without a
// CONNACK while on.
func (f *Faults) RefuseConnects(on bool) {
	f.mu.Lock()
	f.refuse = on
	f.mu.Unlock()
}

func (f *Faults) refusing() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refuse
}

// DelayPubacks delays every PUBACK (and the delivery of the message) by d;
// 0 restores immediate acknowledgement.
func (f *Faults) DelayPubacks(d time.Duration) {
	f.mu.Lock()
	f.delay = d
	f.mu.Unlock()
}

// WithholdPubacks makes the broker accept QoS 1 publishes without
// acknowledging or delivering them while on. ReleasePubacks acknowledges
// the ones withheld so far.
func (f *Faults) WithholdPubacks(on bool) {
	f.mu.Lock()
	f.withhold = on
	f.mu.Unlock()
}

// ReleasePubacks acknowledges and delivers every withheld publish whose
// connection is still open.
func (f *Faults) ReleasePubacks() {
	f.c.hook.mu.Lock()
	var work []func()
	for cl, st := range f.c.hook.clients {
		st.mu.Lock()
		for _, pk := range st.withheld {
			work = append(work, func() { f.deliver(cl, st, pk) })
		}
		st.withheld = nil
		st.mu.Unlock()
	}
	f.c.hook.mu.Unlock()
	for _, w := range work {
		w()
	}
}

// DropConnections closes every client connection abruptly (no
// DISCONNECT, so wills are published).
func (f *Faults) DropConnections() {
	f.c.hook.mu.Lock()
	var cls []*mqtt.Client
	for cl := range f.c.hook.clients {
		cls = append(cls, cl)
	}
	f.c.hook.mu.Unlock()
	for _, cl := range cls {
		cl.Stop(errDropped)
	}
}

// Restart stops the broker, waits down, and starts it again on the same
// addresses. Persistent sessions are lost.
func (f *Faults) Restart(ctx context.Context, down time.Duration) error {
	f.c.Stop()
	t := time.NewTimer(down)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return fmt.Errorf("restart: %w", ctx.Err())
	}
	return f.c.Start(ctx)
}

// onPublish applies the PUBACK faults to an accepted QoS 1 publish.
func (f *Faults) onPublish(cl *mqtt.Client, st *clientState, pk packets.Packet) (packets.Packet, error) {
	f.mu.Lock()
	delay, withhold := f.delay, f.withhold
	f.mu.Unlock()
	if delay == 0 && !withhold {
		f.c.clientStats(cl.ID, func(s *ClientStats) { s.MaxInflight = max(s.MaxInflight, 1) })
		return pk, nil
	}
	st.mu.Lock()
	if st.held >= f.c.limits.MaxInflight {
		st.mu.Unlock()
		f.c.hook.violate(cl, "too many publishes in flight")
		return pk, packets.ErrRejectPacket
	}
	st.held++
	held := st.held
	if withhold {
		st.withheld = append(st.withheld, pk)
	}
	st.mu.Unlock()
	f.c.clientStats(cl.ID, func(s *ClientStats) { s.MaxInflight = max(s.MaxInflight, held) })
	if !withhold {
		f.mu.Lock()
		if f.timers == nil {
			f.timers = make(map[*time.Timer]struct{})
		}
		var t *time.Timer
		t = time.AfterFunc(delay, func() {
			f.mu.Lock()
			delete(f.timers, t)
			f.mu.Unlock()
			f.deliver(cl, st, pk)
		})
		f.timers[t] = struct{}{}
		f.mu.Unlock()
	}
	return pk, packets.ErrRejectPacket // acknowledged later by deliver
}

// deliver sends the PUBACK for pk and delivers it to subscribers.
func (f *Faults) deliver(cl *mqtt.Client, st *clientState, pk packets.Packet) {
	st.mu.Lock()
	st.held--
	st.mu.Unlock()
	if cl.Closed() {
		return // the client will re-send after reconnecting
	}
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID}
	if err := cl.WritePacket(ack); err != nil {
		return
	}
	if srv := f.c.current(); srv != nil {
		_ = srv.Publish(pk.TopicName, pk.Payload, pk.FixedHeader.Retain, pk.FixedHeader.Qos)
	}
	f.c.router.dispatch(cl.ID, pk.TopicName, pk.Payload)
}

func (f *Faults) stopTimers() {
	f.mu.Lock()
	for t := range f.timers {
		t.Stop()
	}
	clear(f.timers)
	f.mu.Unlock()
}

// Disconnect drops the connection of clientID abruptly. It implements
// fleetprov.Disconnecter.
func (c *Cloud) Disconnect(clientID string) error {
	c.hook.mu.Lock()
	var found []*mqtt.Client
	for cl := range c.hook.clients {
		if cl.ID == clientID {
			found = append(found, cl)
		}
	}
	c.hook.mu.Unlock()
	if len(found) == 0 {
		return fmt.Errorf("disconnect %s: not connected", clientID)
	}
	for _, cl := range found {
		cl.Stop(errDropped)
	}
	return nil
}
