package command

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/command/ledger"
)

// job is one command from receipt to final response.
type job struct {
	ctx      context.Context // Run's context
	log      *slog.Logger    // carries cmd_id
	id       string
	topic    string // response topic
	req      Request
	spec     *Spec // nil when the name is unknown or the request unparsed
	received time.Time
	signals  map[string]float64 // the frame's signal values, fixed at the first frame
	progress bool               // IN_PROGRESS already sent
	// armUntil is when arming gives up (wall time; zero until armed);
	// armExpiring: the validity window, not arm_timeout, sets it.
	armUntil    time.Time
	armExpiring bool
	dupes       int // guarded by Engine.mu; redeliveries while in flight
}

// slot serialises the commands of one actuator.
type slot struct {
	running string
	queue   []*job
}

// outcome is what dispatching one delivery leaves to do once the batch's
// ledger lines are durable.
type outcome struct {
	ack     bool         // acknowledge after the batch's ledger sync
	ackLate bool         // acknowledge once resp is delivered (answer not recorded)
	resp    *Response    // final response to deliver
	log     *slog.Logger // with cmd_id, for resp
	start   *job         // admitted and its actuator free: start it
}

// maxParallelDeliveries bounds concurrent response publishes per batch.
const maxParallelDeliveries = 16

// dispatchBatch dispatches received messages in arrival order (conflicts
// are arbitrated in that order), starts the admitted commands, makes the
// batch's ledger lines durable with one fsync, then acknowledges the
// messages in order and delivers the refusals. A batch of refusals thus costs one
// fsync, not one per request.
func (e *Engine) dispatchBatch(ctx context.Context, batch []delivery) {
	if len(batch) == 0 {
		return
	}
	outs := make([]outcome, len(batch))
	for i, d := range batch {
		outs[i] = e.dispatch(ctx, d)
	}
	// Admitted commands start at once: each actuates only after its own
	// fsynced ledger entry (Begin), which also carries this batch's lines
	// to disk when it comes first; the batch's Sync then has nothing left
	// to do. One fsync, not two, before a first frame.
	for _, o := range outs {
		if o.start != nil {
			e.start(o.start)
		}
	}
	synced := true
	if err := e.ledger.Sync(); err != nil {
		// Nothing of this batch is certainly durable: leave it
		// unacknowledged (the broker redelivers it after a reconnect);
		// admitted commands fail at their own ledger write.
		e.log.Error("command ledger write failed", "err", err)
		synced = false
	}
	var sends []int
	for i, o := range outs {
		if o.ack && synced && batch[i].ack != nil {
			batch[i].ack()
		}
		if o.resp != nil {
			sends = append(sends, i)
		}
	}
	if len(sends) == 0 {
		return
	}
	e.mu.Lock()
	for _, i := range sends {
		e.queued[outs[i].resp.ID]++
	}
	e.mu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		sem := make(chan struct{}, maxParallelDeliveries)
		var wg sync.WaitGroup
		for _, i := range sends {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				o := outs[i]
				if e.deliver(ctx, o.log, *o.resp) && o.ackLate && batch[i].ack != nil {
					batch[i].ack()
				}
				e.mu.Lock()
				if e.queued[o.resp.ID]--; e.queued[o.resp.ID] <= 0 {
					delete(e.queued, o.resp.ID)
				}
				e.mu.Unlock()
			}()
		}
		wg.Wait()
	}()
}

// dispatch takes one delivery from receipt to admission or refusal. It runs
// on the dispatcher goroutine only.
func (e *Engine) dispatch(ctx context.Context, d delivery) outcome {
	id, src, ok := e.topics.parse(d.topic)
	if !ok {
		e.log.Warn("command topic not understood", "topic", clip(d.topic))
		return outcome{ack: true} // there is no id to answer
	}
	j := &job{ctx: ctx, log: e.log.With("cmd_id", id), id: id, topic: e.topics.response(id, src), received: d.received}
	j.log.Info("command received", "topic", d.topic, "bytes", d.size, "dup", d.dup)
	if o, known := e.redelivered(j, d.dup); known {
		return o
	}
	req, ref := e.check(d, id, src)
	j.req = req
	if ref == nil && ctx.Err() != nil {
		ref = refuse(StatusRejected, ReasonShutdown, "agent stopping; not actuated")
	}
	if ref == nil {
		ref = e.checkDamaged(req)
	}
	var start bool
	if ref == nil {
		// Only a request that passed every check sees vehicle state in its
		// answer (j.spec selects the state snapshot).
		j.spec = e.specs[req.Name]
		start, ref = e.admit(j)
	}
	if ref != nil {
		resp, recorded := e.record(j, ref, false, true)
		return outcome{ack: recorded, ackLate: !recorded, resp: &resp, log: j.log}
	}
	o := outcome{ack: true}
	if start {
		o.start = j
	}
	return o
}

// checkDamaged refuses a request that may be among the lines lost from a
// damaged ledger: one issued before the damage was found (plus the clock
// skew). It may have been executed by an earlier run.
func (e *Engine) checkDamaged(req Request) *refusal {
	if e.damaged.IsZero() {
		return nil
	}
	if limit := e.damaged.Add(e.cfg.ClockSkew.Std()); !time.UnixMilli(req.IssuedAt).After(limit) {
		return refuse(StatusRejected, ReasonLedgerDamaged, "command ledger was found damaged at %s; a command issued before %s may have run already and is not actuated",
			e.damaged.UTC().Format(time.RFC3339), limit.UTC().Format(time.RFC3339))
	}
	return nil
}

// redelivered handles an id seen before; it never actuates. A broker
// redelivery (dup) is only acknowledged: its answer is coming (in flight)
// or was already sent, or is retried from the ledger until the broker
// acknowledges it. A fresh publish of a known id (a backend retry, a
// replay) is answered with the recorded result.
func (e *Engine) redelivered(j *job, dup bool) (outcome, bool) {
	e.mu.Lock()
	running := e.inflight[j.id]
	if running != nil && !dup {
		running.dupes++ // answered with the result when it is final
	}
	e.mu.Unlock()
	if running != nil {
		j.log.Info("command redelivered while in progress", "dup", dup)
		return outcome{ack: true}, true
	}
	ent, ok := e.ledger.Get(j.id)
	if !ok {
		return outcome{}, false
	}
	if ent.State == ledger.Executing || ent.State == ledger.Received {
		// Only reachable if boot reconciliation could not record a result.
		j.log.Warn("command redelivered with outcome unknown", "state", string(ent.State))
		return outcome{ack: true}, true
	}
	if dup {
		j.log.Info("command redelivered by the broker, already answered", "state", string(ent.State))
		return outcome{ack: true}, true
	}
	resp, err := recorded(ent)
	if err != nil {
		j.log.Error("command ledger result unreadable", "err", err)
		return outcome{ack: true}, true
	}
	j.log.Info("command redelivered, answering with recorded result")
	return outcome{ack: true, resp: &resp, log: j.log}, true
}

// check validates a request that is not yet known: format, identity,
// signature, clock, validity window, name and params.
func (e *Engine) check(d delivery, id string, src source) (Request, *refusal) {
	if d.size > e.cfg.MaxRequestBytes {
		return Request{}, refuse(StatusRejected, ReasonTooLarge, "request is %d bytes, limit %d", d.size, e.cfg.MaxRequestBytes)
	}
	req, err := parse(d.payload, e.cfg.MaxRequestBytes, src == srcAWS)
	if err != nil {
		return Request{}, refuse(StatusRejected, ReasonMalformed, "%v", err)
	}
	if req.ID == "" {
		req.ID = id
	}
	if req.Device == "" {
		req.Device = e.thing
	}
	if req.ID != id {
		return req, refuse(StatusRejected, ReasonIDMismatch, "payload id %q does not match topic id %q", req.ID, id)
	}
	if err := VerifySignature(req, e.keys); err != nil {
		return req, refuse(StatusRejected, ReasonBadSignature, "%v", err)
	}
	if req.Device != e.thing {
		return req, refuse(StatusRejected, ReasonWrongDevice, "command is for device %q, this is %q", req.Device, e.thing)
	}
	if ref := e.checkTime(req, d.received); ref != nil {
		return req, ref
	}
	if _, ok := e.specs[req.Name]; !ok {
		return req, refuse(StatusRejected, ReasonUnknownCommand, "unknown command %q", req.Name)
	}
	if string(req.Params) != "{}" {
		return req, refuse(StatusRejected, ReasonBadParams, "command %q takes no params", req.Name)
	}
	return req, nil
}

// checkTime checks the clock and the validity window at now. All
// arithmetic on the request's integers is done in checked int64
// milliseconds before anything becomes a time.Duration: valid_ms and
// issued_at are outside input and may be anything up to int64 max.
func (e *Engine) checkTime(req Request, now time.Time) *refusal {
	if e.cfg.RequireTrustedClock && !e.clock() {
		return refuse(StatusRejected, ReasonClockUntrusted, "device clock not synchronised since boot; validity cannot be checked")
	}
	if req.ValidMS <= 0 || req.ValidMS > maxMS(e.cfg.MaxValidity.Std()) {
		return refuse(StatusRejected, ReasonValidityTooLong, "valid_ms %d exceeds max_validity %s", req.ValidMS, e.cfg.MaxValidity.Std())
	}
	// time.Time.Sub saturates at the Duration range, so a far-future or
	// far-past issued_at compares correctly.
	if ahead := issuedAhead(req.IssuedAt, now); ahead > e.cfg.ClockSkew.Std() {
		return refuse(StatusRejected, ReasonFuture, "issued %s in the future, tolerance %s", ahead.Round(time.Millisecond), e.cfg.ClockSkew.Std())
	}
	end, ok := addMS(req.IssuedAt, req.ValidMS)
	if !ok { // issued_at near int64 max: already refused as in the future
		return refuse(StatusRejected, ReasonFuture, "issued_at %d out of range", req.IssuedAt)
	}
	if late := now.Sub(time.UnixMilli(end)); late > 0 {
		return refuse(StatusRejected, ReasonExpired, "validity window ended %s ago", late.Round(time.Millisecond))
	}
	return nil
}

// validity returns req's validity window as a Duration, capped at
// max_validity (it is only called for admitted requests, where valid_ms
// is within it; the cap keeps the conversion safe regardless).
func (e *Engine) validity(req Request) time.Duration {
	if req.ValidMS <= 0 {
		return 0
	}
	if req.ValidMS > maxMS(e.cfg.MaxValidity.Std()) {
		return e.cfg.MaxValidity.Std()
	}
	return time.Duration(req.ValidMS) * time.Millisecond
}

// maxMS is d in whole milliseconds (rounded down): an integer ms value v
// satisfies v ms <= d exactly when v <= maxMS(d).
func maxMS(d time.Duration) int64 { return int64(d / time.Millisecond) }

// addMS returns a+b and whether it did not overflow.
func addMS(a, b int64) (int64, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, false
	}
	return s, true
}

// issuedAhead is how far issued_at (Unix ms) is ahead of now, saturating
// (time.Time.Sub saturates at the Duration range).
func issuedAhead(issuedMS int64, now time.Time) time.Duration {
	return time.UnixMilli(issuedMS).Sub(now)
}

// admit checks the interlocks, the ledger room and the actuator, then
// records j as received (buffered; the batch fsyncs it) and marks it in
// flight: running (start reports true) or queued.
func (e *Engine) admit(j *job) (start bool, ref *refusal) {
	// A missing or stale input with wake frames configured is admitted:
	// the job wakes the bus and decides on fresh inputs (awaken).
	if ref := e.il.check(j.req.Name, e.now()); ref != nil && !e.canWake(ref) {
		if j.spec.Mode != ModeAtStandstill || ref.code != ReasonInterlock {
			return false, ref
		}
	}
	if !e.ledgerRoom() {
		return false, refuse(StatusRejected, ReasonLedgerFull, "command ledger full (%d entries); not actuated", e.cfg.MaxLedgerEntries)
	}
	act := j.spec.actuator()
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.busy[act]
	switch {
	case s != nil && e.cfg.Conflict == ConflictReject:
		return false, refuse(StatusRejected, ReasonConflict, "actuator %s is busy with command %s", act, s.running)
	case s != nil && len(s.queue) >= e.cfg.MaxQueue:
		return false, refuse(StatusRejected, ReasonQueueFull, "actuator %s has %d commands queued", act, len(s.queue))
	}
	if err := e.ledger.Receive(j.id, j.req.Name, j.topic, e.expires(j), e.now()); err != nil {
		j.log.Error("command ledger write failed", "err", err)
		return false, refuse(StatusFailed, ReasonLedgerUnavailable, "command ledger unavailable; not actuated")
	}
	e.inflight[j.id] = j
	if s == nil {
		e.busy[act] = &slot{running: j.id}
		return true, nil
	}
	s.queue = append(s.queue, j)
	j.log.Info("command queued", "actuator", act, "behind", s.running)
	return false, nil
}

// start runs j on its own goroutine; it ends when j has its final response.
func (e *Engine) start(j *job) {
	j.log.Info("command admitted", "name", j.req.Name)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		outcome, begun := e.execute(j)
		resp, _ := e.record(j, outcome, begun, false)
		e.release(j) // the actuator is free before the answer goes out
		e.deliver(j.ctx, j.log, resp)
		e.done(j)
	}()
}

// release frees j's actuator and starts the next queued command.
func (e *Engine) release(j *job) {
	act := j.spec.actuator()
	e.mu.Lock()
	var next *job
	if s := e.busy[act]; s == nil || len(s.queue) == 0 {
		delete(e.busy, act)
	} else {
		next = s.queue[0]
		s.queue = s.queue[1:]
		s.running = next.id
	}
	e.mu.Unlock()
	if next != nil {
		e.start(next)
	}
}

// done forgets j as in flight and answers its redeliveries.
func (e *Engine) done(j *job) {
	e.mu.Lock()
	delete(e.inflight, j.id)
	dupes := j.dupes
	e.mu.Unlock()
	if ent, ok := e.ledger.Get(j.id); ok && dupes > 0 && (ent.State == ledger.Done || ent.State == ledger.Responded) {
		for range dupes {
			e.redeliver(j.ctx, j.log, ent)
		}
	}
}

// expires returns when j's ledger entry may be pruned: the end of its
// validity window (bounded by max_validity from receipt) plus clock skew
// and retention.
func (e *Engine) expires(j *job) time.Time {
	end := j.received
	if j.req.IssuedAt > 0 {
		v := time.UnixMilli(j.req.IssuedAt).Add(e.validity(j.req))
		if limit := j.received.Add(e.cfg.MaxValidity.Std()); v.After(limit) {
			v = limit
		}
		if v.After(end) {
			end = v
		}
	}
	return end.Add(e.cfg.ClockSkew.Std() + e.cfg.LedgerRetention.Std())
}
