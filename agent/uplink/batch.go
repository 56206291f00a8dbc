package uplink

import (
	"bytes"
	"slices"
	"strconv"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/record"
	"github.com/tcu-agent/tcu-agent/agent/record/wire"
)

// message is one MQTT publish built from leased records. seqs are exactly
// the records its PUBACK acknowledges.
type message struct {
	topic    string
	payload  []byte
	seqs     []uint64
	oldest   time.Time // observation time of the oldest record
	retained bool      // only the status message
	backlog  bool      // records observed before the connection: rate-limited, sent after live ones
}

// openBatch is a stream envelope being filled.
type openBatch struct {
	topic   string
	buf     []byte
	seqs    []uint64
	opened  time.Time // when the first record was added (monotonic clock)
	oldest  time.Time
	backlog bool
	enc     *wire.Encoder // compact encoding; nil for JSON (buf)
}

// batcher packs leased records into messages: stream records into the
// versioned envelope per topic, up to maxPayload bytes; direct messages
// alone. It is not safe for concurrent use.
type batcher struct {
	maxPayload int
	latency    time.Duration
	prefix     []byte // `{"v":1,"device":"<thing>","records":[`
	telemetry  string
	events     string
	since      time.Time // connection start (wall clock): older records are backlog
	thing      string
	compact    bool            // compact encoding (agent/record/wire) instead of the JSON envelope
	compress   byte            // compact encoding's compressor (zstd; deflate in benchmarks)
	encoders   []*wire.Encoder // free compact encoders

	// eager closes a live batch at once when nothing is in flight and its
	// topic had no message for latency (adaptive batching, flushEager).
	eager      bool
	lastClosed map[string]time.Time // by open-batch key, monotonic

	open    map[string]*openBatch
	ready   []*message
	dropped []uint64 // records that can never be sent (undecodable, too big)
	scratch []byte
}

func newBatcher(thing string, topics topicSet, maxPayload int, latency time.Duration, since time.Time, encoding string) *batcher {
	p := []byte(`{"v":1,"device":`)
	p = strconv.AppendQuote(p, thing)
	p = append(p, `,"records":[`...)
	return &batcher{
		maxPayload: maxPayload, latency: latency, prefix: p,
		telemetry: topics.telemetry, events: topics.events, since: since,
		thing: thing, compact: encoding == EncodingCompact, compress: wire.CompressZstd,
		open: make(map[string]*openBatch), lastClosed: make(map[string]time.Time),
	}
}

// add takes one leased record. now is the (monotonic) time it was leased.
func (b *batcher) add(r Record, now time.Time) {
	rec, err := record.Unmarshal(r.Data)
	if err != nil {
		b.dropped = append(b.dropped, r.Seq)
		return
	}
	if rec.Topic != "" {
		if len(rec.Body) > b.maxPayload {
			b.dropped = append(b.dropped, r.Seq)
			return
		}
		// rec.Body aliases the leased bytes; the message outlives them.
		b.enqueue(&message{topic: rec.Topic, payload: bytes.Clone(rec.Body), seqs: []uint64{r.Seq}, oldest: rec.Time})
		return
	}
	topic := b.telemetry
	if r.Class != ClassTelemetry {
		topic = b.events
	}
	if b.compact {
		b.addCompact(topic, r.Seq, rec, now)
		return
	}
	b.scratch = record.AppendEnvelope(b.scratch[:0], r.Seq, rec)
	if len(b.prefix)+len(b.scratch)+2 > b.maxPayload {
		b.dropped = append(b.dropped, r.Seq)
		return
	}
	backlog := rec.Time.Before(b.since)
	key := topic
	if backlog {
		key += "\x00backlog" // live and backlog records never share a message
	}
	ob := b.open[key]
	if ob != nil && len(ob.buf)+1+len(b.scratch)+2 > b.maxPayload {
		b.close(key)
		ob = nil
	}
	if ob == nil {
		ob = &openBatch{topic: topic, buf: append(make([]byte, 0, 4096), b.prefix...), opened: now, oldest: rec.Time, backlog: backlog}
		b.open[key] = ob
	} else {
		ob.buf = append(ob.buf, ',')
	}
	ob.buf = append(ob.buf, b.scratch...)
	ob.seqs = append(ob.seqs, r.Seq)
	if rec.Time.Before(ob.oldest) {
		ob.oldest = rec.Time
	}
}

// addCompact adds a stream record to the compact batch of its topic,
// closing that batch first if the record would push it past maxPayload.
func (b *batcher) addCompact(topic string, seq uint64, rec record.Record, now time.Time) {
	backlog := rec.Time.Before(b.since)
	key := topic
	if backlog {
		key += "\x00backlog"
	}
	for range 2 {
		ob := b.open[key]
		fresh := ob == nil
		if fresh {
			ob = &openBatch{topic: topic, opened: now, oldest: rec.Time, backlog: backlog, enc: b.encoder()}
		}
		if err := ob.enc.Add(seq, rec.Time.UnixMilli(), rec.Kind, rec.Body); err != nil {
			if fresh {
				b.encoders = append(b.encoders, ob.enc)
			}
			b.dropped = append(b.dropped, seq)
			return
		}
		if wire.Bound(ob.enc.Len()) <= b.maxPayload {
			if fresh {
				b.open[key] = ob
			}
			ob.seqs = append(ob.seqs, seq)
			if rec.Time.Before(ob.oldest) {
				ob.oldest = rec.Time
			}
			return
		}
		ob.enc.Undo()
		if fresh { // alone it does not fit
			b.encoders = append(b.encoders, ob.enc)
			b.dropped = append(b.dropped, seq)
			return
		}
		b.close(key)
	}
}

// encoder returns a reset compact encoder.
func (b *batcher) encoder() *wire.Encoder {
	var e *wire.Encoder
	if n := len(b.encoders); n > 0 {
		e = b.encoders[n-1]
		b.encoders = b.encoders[:n-1]
	} else {
		var err error
		if e, err = wire.NewEncoder(b.compress); err != nil {
			panic(err) // only for an unknown compression
		}
	}
	e.Reset(b.thing)
	return e
}

// enqueue adds m to the ready list: live messages go before every backlog
// message, each kind in order.
func (b *batcher) enqueue(m *message) {
	i := len(b.ready)
	if !m.backlog {
		for i > 0 && b.ready[i-1].backlog {
			i--
		}
	}
	b.ready = slices.Insert(b.ready, i, m)
}

// close moves the open batch with key to the ready list.
func (b *batcher) close(key string) {
	ob := b.open[key]
	if ob == nil {
		return
	}
	delete(b.open, key)
	b.lastClosed[key] = time.Now()
	payload := append(ob.buf, ']', '}')
	if ob.enc != nil {
		var err error
		b.scratch, err = ob.enc.Finish(b.scratch[:0])
		b.encoders = append(b.encoders, ob.enc)
		if err != nil || len(b.scratch) > b.maxPayload { // cannot happen: Bound holds
			b.dropped = append(b.dropped, ob.seqs...)
			return
		}
		payload = append(make([]byte, 0, len(b.scratch)), b.scratch...)
	}
	b.enqueue(&message{topic: ob.topic, payload: payload, seqs: ob.seqs, oldest: ob.oldest, backlog: ob.backlog})
}

// flushDue closes batches that have waited BatchLatency in the session
// (mono is the monotonic now, as passed to add), and, when the queue has
// nothing more right now (idle), batches whose oldest record was observed
// BatchLatency or more before wall: a backlog goes out without waiting.
func (b *batcher) flushDue(mono, wall time.Time, idle bool) {
	for key, ob := range b.open {
		if mono.Sub(ob.opened) >= b.latency || (idle && wall.Sub(ob.oldest) >= b.latency) {
			b.close(key)
		}
	}
}

// flushEager closes the live batches whose topic had no message for
// latency: the first record after a quiet spell goes at once, the ones
// after it are batched as before (at most one extra message per topic
// and latency). When the queue has nothing more (idle), backlog batches
// close too: the records observed before the connection (at start-up,
// before the first connect) need not wait until they are latency old.
// The drain calls it only while nothing is in flight.
func (b *batcher) flushEager(mono time.Time, idle bool) {
	if !b.eager {
		return
	}
	for key, ob := range b.open {
		if ob.backlog {
			if idle {
				b.close(key)
			}
			continue
		}
		if last, ok := b.lastClosed[key]; !ok || mono.Sub(last) >= b.latency {
			b.close(key)
		}
	}
}

// deadline is when (monotonic) the next open batch becomes due, zero if
// none.
func (b *batcher) deadline() time.Time {
	var d time.Time
	for _, ob := range b.open {
		if t := ob.opened.Add(b.latency); d.IsZero() || t.Before(d) {
			d = t
		}
	}
	return d
}

// push queues a message that carries no records (the status) first.
func (b *batcher) push(m *message) { b.ready = append([]*message{m}, b.ready...) }

// peek returns the next message to publish, or nil.
func (b *batcher) peek() *message {
	if len(b.ready) == 0 {
		return nil
	}
	return b.ready[0]
}

// pop removes the message returned by peek.
func (b *batcher) pop() {
	b.ready[0] = nil
	b.ready = b.ready[1:]
}

// takeDropped returns and clears the seqs of unsendable records.
func (b *batcher) takeDropped() []uint64 {
	d := b.dropped
	b.dropped = nil
	return d
}

// held returns and forgets the seqs of every record not yet published.
func (b *batcher) held() []uint64 {
	var seqs []uint64
	for _, m := range b.ready {
		seqs = append(seqs, m.seqs...)
	}
	for _, ob := range b.open {
		seqs = append(seqs, ob.seqs...)
	}
	b.ready = nil
	clear(b.open)
	return seqs
}

// count is the number of records held.
func (b *batcher) count() int {
	n := 0
	for _, m := range b.ready {
		n += len(m.seqs)
	}
	for _, ob := range b.open {
		n += len(ob.seqs)
	}
	return n
}

// pending reports whether the batcher holds any records.
func (b *batcher) pending() bool { return len(b.ready) > 0 || len(b.open) > 0 }
