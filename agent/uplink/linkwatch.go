package uplink

import (
	"errors"
	"net"
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

// Timing of paho's keep-alive (paho.mqtt.golang v1.5.1, ping.go): it
// checks every pahoTick(ka) whether nothing was sent OR nothing was
// received for ka, then sends one PINGREQ and gives up when no PINGRESP
// came within PingTimeout (checked on the same tick). A healthy link
// therefore receives something at least every ka + pahoTick(ka) + RTT.
func pahoTick(ka time.Duration) time.Duration {
	if ka > 10*time.Second {
		return 5 * time.Second
	}
	return ka / 4
}

// pingWait is the PINGRESP budget (paho's PingTimeout) and the budget for
// "any answer at all" after a publish: ka/4, at most 10 s, at least
// 500 ms.
func pingWait(ka time.Duration) time.Duration {
	return min(max(ka/4, 500*time.Millisecond), 10*time.Second)
}

// silenceLimit is how long the connection may receive nothing before it
// is declared dead: ka + pahoTick + pingWait, which is ≤ 1.5·ka for every
// ka ≥ 2 s (ka ≤ 10 s: exactly 1.5·ka; 30 s: 42.5 s; 60 s: 75 s; 1200 s:
// 1215 s).
func silenceLimit(ka time.Duration) time.Duration {
	return ka + pahoTick(ka) + pingWait(ka)
}

// linkWatch records when the connection last received bytes and when a
// publish that expects an answer was last sent. Both are monotonic
// nanoseconds since base. It is safe for concurrent use.
type linkWatch struct {
	base     time.Time
	lastRead atomic.Int64
	expectAt atomic.Int64 // first publish not followed by any read; 0 = none
	kick     chan struct{}
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

// expect notes a publish that the broker must answer (PUBACK).
func (w *linkWatch) expect() {
	if w.expectAt.CompareAndSwap(0, w.now()) {
		select {
		case w.kick <- struct{}{}:
		default:
		}
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

// watchedConn feeds a linkWatch from the connection's reads.
type watchedConn struct {
	net.Conn
	w *linkWatch
}

func (c *watchedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.w.read()
	}
	return n, err
}

// watch fails c when the broker has been silent for silenceLimit(ka) or
// did not answer a publish within pingWait(ka). It breaks the socket so
// that paho's reader ends too. It returns when c is lost. The timer is
// re-armed to the next deadline, so an idle link costs one wake-up per
// keep-alive interval.
func (s *Session) watch(c *conn, w *linkWatch, ka time.Duration) {
	silence, answer := silenceLimit(ka), pingWait(ka)
	t := time.NewTimer(silence)
	defer t.Stop()
	for {
		select {
		case <-c.lost:
			return
		case <-t.C:
		case <-w.kick:
		}
		now := w.now()
		dl := w.deadline(silence, answer)
		if now < dl {
			t.Reset(time.Duration(dl - now))
			continue
		}
		var err error
		if e := w.expectAt.Load(); e != 0 && now-e >= int64(answer) {
			err = errors.Join(errDeadLink, errors.New("no answer to a publish within "+answer.String()))
		} else {
			err = errors.Join(errDeadLink, errors.New("nothing received for "+silence.String()+" (keep-alive "+ka.String()+")"))
		}
		c.fail(err)
		c.breakSocket()
		return
	}
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
