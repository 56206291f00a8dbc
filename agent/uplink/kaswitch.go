package uplink

import (
	"errors"
	"time"
)

// A keep-alive is fixed in CONNECT. When a profile asks for one far from
// the live connection's (parked: 300–1200 s instead of 60 s; back to
// driving), the session reconnects once at a quiet moment so the broker
// and paho use it, instead of pinging at the old value until the next
// outage:
//
//   - only when the requested keep-alive differs from the connection's by
//     more than kaSwitchFactor (a lower one already applies on the live
//     connection through our own pings, linkwatch.go; the reconnect also
//     lowers the broker's LWT timer);
//   - only when nothing is in flight (no publish awaiting its PUBACK) and
//     nothing is held in a batch, and nothing was received for
//     kaSwitchQuiet (an inbound command is probably followed by its
//     response);
//   - at most once per kaSwitchEvery;
//   - cleanly: DISCONNECT (the broker drops the LWT and keeps the
//     persistent session, so commands queued meanwhile are delivered and
//     the subscriptions stay), no offline status, reconnected at once
//     (only the 1.1 s connect spacing applies), not counted as a
//     reconnect or an error (Stats.KeepAliveSwitches counts it).
//
// A reconnect costs a TLS handshake, CONNECT/CONNACK and the online
// status (4.6 KB both ways with the devcloud PKI, TestKeepAliveSwitchWireCost);
// a PING exchange costs 48 bytes of TLS records, so going from 60 s to
// 1200 s (57 fewer exchanges an hour) pays for itself in 1.7 h parked.

// errKeepAliveSwitch ends a connection so that the next one carries the
// requested keep-alive.
var errKeepAliveSwitch = errors.New("reconnecting to apply a new keep-alive")

// kaSwitchFactor is how far the requested keep-alive must be from the
// connection's to reconnect for it.
const kaSwitchFactor = 2

// kaSwitchEvery bounds keep-alive reconnects (a profile that flaps).
var kaSwitchEvery = 10 * time.Minute

// kaSwitchQuiet is how long nothing must have been received.
var kaSwitchQuiet = 5 * time.Second

// kaSwitch is called by the drain when it is about to wait idle with
// nothing leased. It reports whether to end c now for a keep-alive
// switch, or else when to check again (zero: at the next change; the
// drain is woken by SetKeepAlive, a PUBACK or a batch deadline anyway).
func (s *Session) kaSwitch(c *conn, b *batcher) (bool, time.Time) {
	target := s.keepAliveTarget()
	if target <= kaSwitchFactor*c.ka && kaSwitchFactor*target >= c.ka {
		return false, time.Time{}
	}
	if b.pending() || len(c.window) > 0 {
		return false, time.Time{}
	}
	now := time.Now()
	if !s.kaSwitched.IsZero() {
		if next := s.kaSwitched.Add(kaSwitchEvery); now.Before(next) {
			return false, next
		}
	}
	if quiet := c.watch.lastReadAt().Add(kaSwitchQuiet); now.Before(quiet) {
		return false, quiet
	}
	s.kaSwitched = now
	return true, time.Time{}
}

// closeForSwitch ends c with DISCONNECT: no LWT, the broker keeps the
// session. Nothing is in flight (kaSwitch waited for that); a Publish
// that raced with the switch fails with ErrNotConnected like at any
// reconnect.
func (s *Session) closeForSwitch(c *conn) {
	c.wg.Wait() // bounded by ack_timeout
	c.client.Disconnect(250)
	c.pubs.Wait()
}

// earliest is the earlier of two deadlines, zero meaning none.
func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}
