package uplink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tcu-agent/tcu-agent/internal/backoff"
)

// leaseMax is the most records leased at once.
const leaseMax = 4096

// errAckTimeout breaks a connection whose broker stopped acknowledging.
var errAckTimeout = errors.New("puback timeout")

// conn is one established connection and what depends on it.
type conn struct {
	*connected
	since    time.Time
	window   chan struct{} // in-flight slots
	lost     chan struct{} // closed when the connection is unusable
	lostOnce sync.Once
	lostErr  error          // set before lost is closed
	pahoDone chan struct{}  // closed by paho's connection-lost callback
	wg       sync.WaitGroup // awaits of in-flight messages
	pubs     sync.WaitGroup // paho Publish calls (publish)
	ka       time.Duration  // keep-alive of this connection
	probe    time.Duration  // adaptive: our own ping interval (< ka); 0 = paho's keep-alive only
	net      string         // adaptive: the network key
	watch    *linkWatch     // dead-link detection
	drained  chan struct{}  // capacity 1: the last in-flight publish was answered
}

// publish hands a QoS 1 message to paho without letting a dying
// connection block the caller: once the connection is lost, paho's
// Publish waits up to WriteTimeout (ack_timeout) for a writer that is
// gone. It returns nil if c was lost first; that Publish call then ends
// in the background (counted in c.pubs). Callers publish one at a time, so
// the order is kept.
func (c *conn) publish(topic string, retained bool, payload []byte) mqtt.Token {
	pub := make(chan mqtt.Token, 1)
	c.pubs.Add(1)
	go func() { defer c.pubs.Done(); pub <- c.client.Publish(topic, 1, retained, payload) }()
	select {
	case tok := <-pub:
		return tok
	case <-c.lost:
		return nil
	}
}

// settle frees an in-flight slot and tells the drain when none is left.
func (c *conn) settle() {
	<-c.window
	if len(c.window) == 0 {
		select {
		case c.drained <- struct{}{}:
		default:
		}
	}
}

func (c *conn) fail(err error) {
	c.lostOnce.Do(func() {
		c.lostErr = err
		close(c.lost)
	})
}

// serve runs one connection: subscribe, announce online, drain. It
// returns when the connection is lost or ctx is done, with the
// connection closed and every unacknowledged record released.
func (s *Session) serve(ctx context.Context, c *conn) error {
	s.mu.Lock()
	present, subsOK := c.present, s.subsOK
	s.mu.Unlock()
	if s.st.connects.Add(1) > 1 && !s.switched {
		s.st.reconnects.Add(1)
	}
	s.switched = false
	s.log.Info("mqtt connected", "broker", s.cfg.Broker, "thing", s.opts.Thing, "session_present", present)
	watched := make(chan struct{})
	go func() { s.watch(c, c.watch, c.ka); close(watched) }() // ends when c is lost
	defer func() { <-watched }()                              // c is failed by closeGracefully/closeBroken
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // ends with cancel at return
		select {
		case <-c.lost:
			cancel()
		case <-cctx.Done():
		}
	}()
	if err := s.online(cctx, c, present && subsOK); err != nil && cctx.Err() == nil {
		s.log.Error("mqtt subscribe failed", "err", err)
	}
	s.setConn(c) // Connected and Publish from here on: subscriptions are in place
	if s.opts.OnConnect != nil {
		s.opts.OnConnect()
	}
	s.drain(cctx, c)
	s.setConn(nil)
	switch {
	case ctx.Err() != nil:
		s.closeGracefully(c)
	case errors.Is(c.lostErr, errKeepAliveSwitch):
		s.closeForSwitch(c)
	default:
		s.closeBroken(c)
	}
	if c.lostErr != nil {
		return c.lostErr
	}
	return errors.New("connection closed")
}

// online subscribes unless the broker kept the session. (The retained
// online status is the drain's first message.) After a SUBACK refusal
// the subscriptions are not tried again for AuthBackoff: AWS IoT closes
// the connection on a refused filter, and retrying on every connect
// would keep telemetry from flowing too.
func (s *Session) online(ctx context.Context, c *conn, kept bool) error {
	s.mu.Lock()
	pause := time.Now().Before(s.subsPausedUntil)
	s.mu.Unlock()
	if kept || pause || len(s.opts.Subscriptions) == 0 {
		return nil
	}
	err := subscribe(ctx, c.client, s.opts.Subscriptions, s.cfg.AckTimeout.Std())
	s.mu.Lock()
	s.subsOK = err == nil
	if errors.Is(err, errSubscribeRefused) {
		s.subsPausedUntil = time.Now().Add(s.cfg.AuthBackoff.Std())
	}
	s.mu.Unlock()
	return err
}

// holdCap bounds the records the batcher holds while backlog messages
// wait for their rate.
const holdCap = 2 * leaseMax

// liveLeaseMax is the lease size used to pick up live records while the
// backlog is throttled (the buffer leases live records first).
const liveLeaseMax = 256

// drain moves records from the queue to the broker until ctx is done.
func (s *Session) drain(ctx context.Context, c *conn) {
	b := newBatcher(s.opts.Thing, s.topics, s.cfg.MaxPayload, s.batchLatency(), c.since, s.cfg.Encoding)
	b.eager = !s.noEagerBatch
	defer func() { s.release(b.held()) }()
	b.push(&message{topic: s.topics.status, payload: s.statusPayload("online"), oldest: c.since, retained: true})
	for ctx.Err() == nil {
		s.st.drainLoops.Add(1)
		b.latency = s.batchLatency()
		if m := b.peek(); m != nil {
			// Backlog messages also wait for the throughput cap here, where
			// live records can overtake them, not in send.
			if wait := max(s.backlog.delay(), s.rate.byteDelay()); m.backlog && wait > 0 {
				s.throttled(ctx, c, b, wait) // live records may overtake meanwhile
				continue
			}
			if !s.send(ctx, c, m) {
				return
			}
			b.pop()
			continue
		}
		n, ok := s.fill(ctx, c, b, leaseMax)
		if ok && n == 0 && b.peek() == nil {
			now, next := s.kaSwitch(c, b)
			if now {
				c.fail(errKeepAliveSwitch)
				return
			}
			s.idle(ctx, c, earliest(b.deadline(), next))
		}
	}
}

// fill leases up to max records into b and closes due batches. It
// reports how many records came and false if the lease failed.
func (s *Session) fill(ctx context.Context, c *conn, b *batcher, max int) (int, bool) {
	recs, err := s.lease(max)
	if err != nil {
		s.logRare("buffer lease failed", err)
		_ = backoff.Sleep(ctx, time.Second)
		return 0, false
	}
	now := time.Now() // batch latency runs on the monotonic clock
	for _, r := range recs {
		b.add(r, now)
	}
	if d := b.takeDropped(); len(d) > 0 {
		s.drop(d)
	}
	b.flushDue(now, s.now(), len(recs) == 0)
	if len(c.window) == 0 {
		// Nothing in flight: a live batch whose topic has not had a
		// message for batch_latency goes at once (adaptive batching).
		b.flushEager(now, len(recs) == 0)
	}
	return len(recs), true
}

// lease leases up to max records of the classes SetPublishClasses allows.
func (s *Session) lease(max int) ([]Record, error) {
	allow := s.hooks.allow()
	if allow == nil {
		return s.opts.Queue.Lease(max, s.cfg.MaxPayload)
	}
	if cl, ok := s.opts.Queue.(ClassLeaser); ok {
		return cl.LeaseClasses(max, s.cfg.MaxPayload, allow)
	}
	recs, err := s.opts.Queue.Lease(max, s.cfg.MaxPayload)
	if err != nil {
		return nil, err
	}
	var back []uint64
	kept := recs[:0]
	for _, r := range recs {
		if allow(r.Class) {
			kept = append(kept, r)
		} else {
			back = append(back, r.Seq)
		}
	}
	if len(back) > 0 {
		s.opts.Queue.Release(back...)
		// A queue may signal Ready on Release: swallow our own signal, or
		// the drain would lease and release the same records in a loop.
		// An append signalled at the same moment is found by the next
		// idle wait's idlePoll.
		select {
		case <-s.opts.Queue.Ready():
			s.swallowed = true
		default:
		}
	}
	return kept, nil
}

// throttled waits up to wait for the backlog rate. An append meanwhile
// is leased (live records first) so that it is not stuck behind the
// backlog; a live batch that comes due is closed, which puts it ahead.
func (s *Session) throttled(ctx context.Context, c *conn, b *batcher, wait time.Duration) {
	if d := b.deadline(); !d.IsZero() {
		wait = min(wait, max(time.Until(d), time.Millisecond))
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	var ready <-chan struct{}
	if b.count() < holdCap {
		ready = s.opts.Queue.Ready()
	}
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	case <-ready:
		s.fill(ctx, c, b, liveLeaseMax)
	}
	b.flushDue(time.Now(), s.now(), false)
}

// idlePoll bounds an idle wait only after lease swallowed a Ready
// signal (a queue without ClassLeaser while a class is excluded): an
// append signalled at that moment would otherwise wait for the next one.
const idlePoll = time.Second

// idle waits for an append (Queue.Ready), the next batch deadline, the
// last in-flight PUBACK, a changed override or released records
// (hooks.wake), or ctx. Every one of these signals is level-triggered (a
// capacity-1 channel set after the change), so an idle session with
// nothing held waits without a timer: a change between the last lease and
// this wait leaves its signal set and the wait returns at once.
func (s *Session) idle(ctx context.Context, c *conn, deadline time.Time) {
	s.st.idleWaits.Add(1)
	if s.testBeforeIdle != nil {
		s.testBeforeIdle(deadline.IsZero() && len(c.window) == 0 && len(c.drained) == 0 && len(s.hooks.wake) == 0)
	}
	if s.swallowed {
		s.swallowed = false
		if deadline.IsZero() || time.Until(deadline) > idlePoll {
			deadline = time.Now().Add(idlePoll)
		}
	}
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(max(time.Until(deadline), time.Millisecond))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-s.opts.Queue.Ready():
	case <-timeout:
	case <-c.drained:
	case <-s.hooks.wake:
	case <-ctx.Done():
	}
}

// send publishes m once a window slot and the rate allow; the PUBACK is
// awaited on its own goroutine. It reports false if ctx ended first.
func (s *Session) send(ctx context.Context, c *conn, m *message) bool {
	select {
	case c.window <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	ok := s.rate.waitPublish(ctx.Done(), nil, len(m.payload))
	if ok && m.backlog {
		ok = s.backlog.wait(ctx.Done(), nil, len(m.seqs))
	}
	if !ok {
		<-c.window
		return false
	}
	c.watch.expect()
	tok := c.publish(m.topic, m.retained, m.payload)
	if tok == nil { // lost meanwhile: the drain ends and releases m with the rest
		c.settle()
		return false
	}
	s.st.published.Add(1)
	s.st.bytes.Add(uint64(len(m.payload)))
	s.st.inflight.Add(1)
	c.wg.Add(1)
	go s.await(c, tok, m) // ends on PUBACK, connection loss or AckTimeout
	return true
}

// await commits m's records on PUBACK and releases them otherwise.
func (s *Session) await(c *conn, tok mqtt.Token, m *message) {
	defer c.wg.Done()
	t := time.NewTimer(s.cfg.AckTimeout.Std())
	defer t.Stop()
	var err error
	select {
	case <-tok.Done():
		err = tok.Error()
	case <-c.lost:
		err = ErrNotConnected
	case <-t.C:
		err = errAckTimeout
		c.fail(fmt.Errorf("%w on %s", errAckTimeout, m.topic))
	}
	c.settle()
	s.st.inflight.Add(-1)
	if err != nil {
		s.release(m.seqs)
		s.hooks.poke() // a queue need not signal Ready on Release: lease them again
		return
	}
	s.st.acked.Add(1)
	if len(m.seqs) == 0 {
		return
	}
	if err := s.opts.Queue.Ack(m.seqs...); err != nil {
		s.logRare("buffer ack failed", err) // records will be re-sent: at-least-once
		return
	}
	s.st.ackedRecords.Add(uint64(len(m.seqs)))
}

// publishWait publishes one message outside the drain and waits for its
// PUBACK.
func (s *Session) publishWait(ctx context.Context, c *conn, topic string, payload []byte, retained bool) error {
	if retained && strings.HasPrefix(topic, "$") {
		return fmt.Errorf("publish %s: retained publishes on reserved topics are not allowed", topic)
	}
	select {
	case c.window <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("publish %s: %w", topic, ctx.Err())
	case <-c.lost:
		return fmt.Errorf("publish %s: %w", topic, ErrNotConnected)
	}
	defer c.settle()
	if !s.rate.waitPublish(ctx.Done(), c.lost, len(payload)) {
		return fmt.Errorf("publish %s: %w", topic, ErrNotConnected)
	}
	s.st.inflight.Add(1)
	defer s.st.inflight.Add(-1)
	c.watch.expect()
	tok := c.publish(topic, retained, payload)
	if tok == nil {
		return fmt.Errorf("publish %s: %w", topic, ErrNotConnected)
	}
	s.st.published.Add(1)
	s.st.bytes.Add(uint64(len(payload)))
	t := time.NewTimer(s.cfg.AckTimeout.Std())
	defer t.Stop()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("publish %s: %w", topic, err)
		}
		s.st.acked.Add(1)
		return nil
	case <-ctx.Done():
		return fmt.Errorf("publish %s: %w", topic, ctx.Err())
	case <-c.lost:
		return fmt.Errorf("publish %s: %w", topic, ErrNotConnected)
	case <-t.C:
		c.fail(fmt.Errorf("%w on %s", errAckTimeout, topic))
		return fmt.Errorf("publish %s: %w", topic, errAckTimeout)
	}
}

func (s *Session) publishRetained(ctx context.Context, c *conn, topic string, payload []byte) error {
	return s.publishWait(ctx, c, topic, payload, true)
}

// closeGracefully finishes in-flight messages within ShutdownGrace,
// publishes the offline status and disconnects (no LWT is sent).
func (s *Session) closeGracefully(c *conn) {
	waited := make(chan struct{})
	go func() { c.wg.Wait(); close(waited) }() // ends when every await returned
	t := time.NewTimer(s.cfg.ShutdownGrace.Std())
	select {
	case <-waited:
	case <-t.C:
	case <-c.lost:
	}
	t.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	if err := s.publishRetained(ctx, c, s.topics.status, s.statusPayload("offline")); err != nil {
		s.log.Warn("mqtt offline status not sent", "err", err)
	}
	cancel()
	c.client.Disconnect(250)
	c.fail(errors.New("session closed"))
	<-waited
	c.pubs.Wait()
}

// closeBroken drops the connection without DISCONNECT (the broker sends
// the LWT) and waits for paho and the awaits to finish.
func (s *Session) closeBroken(c *conn) {
	c.breakSocket() // paho sees the loss at once
	select {
	case <-c.pahoDone:
	case <-time.After(5 * time.Second):
		c.client.Disconnect(0)
	}
	if tc := c.dial.last(); tc != nil {
		_ = tc.Conn.Close()
	}
	c.fail(errors.New("connection closed"))
	c.wg.Wait()
	c.pubs.Wait()
}

func (s *Session) release(seqs []uint64) {
	if len(seqs) == 0 {
		return
	}
	s.opts.Queue.Release(seqs...)
	s.st.released.Add(uint64(len(seqs)))
}

// drop acknowledges records that can never be published so they do not
// block the queue.
func (s *Session) drop(seqs []uint64) {
	s.st.dropped.Add(uint64(len(seqs)))
	s.logRare("dropping unsendable records", fmt.Errorf("%d records undecodable or larger than max_payload (first seq %d)", len(seqs), seqs[0]))
	if err := s.opts.Queue.Ack(seqs...); err != nil {
		s.logRare("buffer ack failed", err)
	}
}

// logRare logs each message at most once a minute.
func (s *Session) logRare(msg string, err error) {
	s.mu.Lock()
	now := time.Now()
	ok := now.Sub(s.rare[msg]) >= time.Minute
	if ok {
		if s.rare == nil {
			s.rare = make(map[string]time.Time)
		}
		s.rare[msg] = now
	}
	s.mu.Unlock()
	if ok {
		s.log.Warn(msg, "err", err)
	}
}
