package uplink

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// errDeadLink is a connection that stopped answering: nothing came back
// from the broker within the keep-alive budget, or a publish got no
// answer at all. A carrier NAT that silently dropped the mapping looks
// like this: the socket stays "up", writes succeed, nothing arrives.
var errDeadLink = errors.New("dead link: no traffic from the broker")

// The session sends its own PINGREQs (paho's keep-alive goroutine is off:
// it would wake every 5 s whatever the keep-alive, paho.mqtt.golang
// v1.5.1 ping.go). Like paho, watch pings once nothing was sent or
// nothing was received for ka, and gives up when no answer came within
// pingWait(ka). A healthy link therefore receives something at least
// every ka + RTT.

// pingWait is the PINGRESP budget and the budget for "any answer at all"
// after a publish: ka/4, at most 10 s, at least 500 ms.
func pingWait(ka time.Duration) time.Duration {
	return min(max(ka/4, 500*time.Millisecond), 10*time.Second)
}

// silenceLimit is how long the connection may receive nothing before it
// is declared dead even if a ping could not be sent: ka + 2·pingWait(ka),
// ≤ 1.5·ka for every ka (exactly 1.5·ka up to 40 s; 60 s: 80 s; 1200 s:
// 1220 s). An unanswered ping finds a dead link sooner, within
// ka + pingWait(ka) of the last read.
func silenceLimit(ka time.Duration) time.Duration {
	return ka + 2*pingWait(ka)
}

// linkWatch records when the connection last received bytes and when a
// publish that expects an answer was last sent. Both are monotonic
// nanoseconds since base. It is safe for concurrent use.
type linkWatch struct {
	base      time.Time
	lastRead  atomic.Int64
	lastWrite atomic.Int64
	expectAt  atomic.Int64 // first publish not followed by any read; 0 = none
	kick      chan struct{}
}

func newLinkWatch() *linkWatch {
	return &linkWatch{base: time.Now(), kick: make(chan struct{}, 1)}
}

func (w *linkWatch) now() int64 { return int64(time.Since(w.base)) + 1 }

// read notes inbound bytes: the link is alive.
func (w *linkWatch) read() {
	w.lastRead.Store(w.now())
	w.expectAt.Store(0)
}

// wrote notes outbound bytes.
func (w *linkWatch) wrote() { w.lastWrite.Store(w.now()) }

// lastReadAt is when bytes were last received.
func (w *linkWatch) lastReadAt() time.Time {
	return w.base.Add(time.Duration(w.lastRead.Load()))
}

// expect notes a publish that the broker must answer (PUBACK).
func (w *linkWatch) expect() {
	if w.expectAt.CompareAndSwap(0, w.now()) {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// poke makes the watchdog re-read its settings.
func (w *linkWatch) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// deadline is when (nanoseconds since base) the link counts as dead
// unless something is read before.
func (w *linkWatch) deadline(silence, answer time.Duration) int64 {
	d := w.lastRead.Load() + int64(silence)
	if e := w.expectAt.Load(); e != 0 {
		d = min(d, e+int64(answer))
	}
	return d
}

// watch keeps c alive and fails it when it is dead. It pings when
// nothing was sent or nothing was received for ka (the MQTT keep-alive,
// which the broker enforces), and declares the link dead when that ping
// is not answered within pingWait(ka), when a publish got no answer at
// all within pingWait(ka), or when nothing was received for
// silenceLimit(ka). It breaks the socket so that paho's reader ends too,
// and returns when c is lost. The timer is re-armed to the next
// deadline, so an idle link costs two wake-ups per keep-alive interval
// (the ping, the check of its answer).
//
// With adaptive keep-alive (c.probe > 0, shorter than ka) it also pings
// after c.probe without a read, declares the link dead when that ping is
// not answered within pingWait(c.probe), and tells the learner whether
// the idle gap held.
func (s *Session) watch(c *conn, w *linkWatch, ka time.Duration) {
	silence, answer := silenceLimit(ka), pingWait(ka)
	k := c.probe
	if k > 0 {
		answer = pingWait(k)
	}
	var pingSent, gapFrom int64 // our outstanding ping; the read before it
	var probing bool            // the outstanding ping is an adaptive probe
	t := time.NewTimer(min(ka, silence))
	defer t.Stop()
	for {
		select {
		case <-c.lost:
			return
		case <-t.C:
		case <-w.kick:
		}
		now := w.now()
		last := w.lastRead.Load()
		// A keep-alive lowered by SetKeepAlive since the connect applies
		// at once: we ping at it ourselves.
		k, answer = ownPing(k, answer, s.keepAliveTarget(), ka)
		if pingSent != 0 && last >= pingSent { // answered: the idle gap held
			if s.learner != nil && probing {
				s.learner.held(c.net, time.Duration(pingSent-gapFrom), ka)
				// The next probe applies on this connection at once.
				if k = s.learner.interval(c.net, ka); k >= ka {
					k, answer = 0, pingWait(ka) // pings at the CONNECT keep-alive only
				} else {
					answer = pingWait(k)
				}
				k, answer = ownPing(k, answer, s.keepAliveTarget(), ka)
			}
			pingSent = 0
		}
		dl := w.deadline(silence, answer)
		// The MQTT keep-alive: ping once nothing was sent or nothing was
		// received for ka; a probe (or a lowered keep-alive) pings after
		// k without a read.
		pingAt, probe := min(last, w.lastWrite.Load())+int64(ka), false
		if k > 0 && last+int64(k) < pingAt {
			pingAt, probe = last+int64(k), true
		}
		if pingSent == 0 && now >= pingAt {
			// A ping that cannot be written (paho is stuck in a write,
			// the socket failed) counts as sent: if nothing arrives
			// within answer, the link is dead.
			_ = c.ping()
			pingSent, gapFrom, probing = now, last, probe
		}
		if pingSent != 0 {
			dl = min(dl, pingSent+int64(answer))
		} else {
			dl = min(dl, pingAt)
		}
		if now < dl {
			t.Reset(time.Duration(dl - now))
			continue
		}
		var err error
		switch e := w.expectAt.Load(); {
		case pingSent != 0 && now-pingSent >= int64(answer):
			gap := time.Duration(pingSent - gapFrom)
			err = fmt.Errorf("%w: no PINGRESP within %v after an idle gap of %v", errDeadLink, answer, gap.Round(time.Millisecond))
			if s.learner != nil && probing {
				s.learner.dropped(c.net, gap)
			}
		case e != 0 && now-e >= int64(answer):
			err = fmt.Errorf("%w: no answer to a publish within %v", errDeadLink, answer)
		default:
			err = fmt.Errorf("%w: nothing received for %v (keep-alive %v)", errDeadLink, silence, ka)
		}
		c.fail(err)
		c.breakSocket()
		return
	}
}

// ownPing returns our own ping interval and answer budget: k (0 = none,
// paho pings at ka), or target when the keep-alive was lowered below
// both since the connect.
func ownPing(k, answer, target, ka time.Duration) (time.Duration, time.Duration) {
	if target < ka && (k == 0 || target < k) {
		return target, pingWait(target)
	}
	return k, answer
}

// quickReconnectAfter is how long a connection must have lasted (or its
// keep-alive, if shorter) for its loss to be retried at once: a link that
// dies right after connecting again and again goes through the normal
// backoff.
const quickReconnectAfter = 10 * time.Second

// pathLoss reports a connection loss the path caused (dead link found
// locally, PUBACK timeout, reset by a middlebox or peer) rather than the
// broker closing the connection: the device reconnects at once instead
// of waiting out the fleet-wide backoff window.
func pathLoss(err error) bool {
	if err == nil {
		return false
	}
	return errors.Is(err, errDeadLink) || errors.Is(err, errAckTimeout) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		strings.Contains(err.Error(), "pingresp not received") ||
		strings.Contains(err.Error(), "connection reset by peer")
}

// breakSocket makes every pending and future read and write on the
// connection fail at once with a timeout. paho then reports the
// connection lost; it would ignore a socket simply closed under it
// ("use of closed network connection" is taken for its own disconnect)
// and only notice at its next failed ping.
func (c *conn) breakSocket() {
	if tc := c.dial.last(); tc != nil {
		_ = tc.Conn.SetDeadline(time.Unix(1, 0))
	}
}

// ping writes a PINGREQ between paho's packets (each of which paho
// writes with one Write call; trackedConn serialises them). paho takes
// the PINGRESP in its stride.
func (c *conn) ping() error {
	tc := c.dial.last()
	if tc == nil {
		return errNoPing
	}
	return tc.writePacket([]byte{0xc0, 0x00})
}
