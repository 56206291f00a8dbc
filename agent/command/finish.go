package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/command/ledger"
)

// respondTimeout bounds one hand-over to the responder. A publish that
// times out after it was written may still reach the broker, and the
// resend then answers the id a second time: the bound must sit well above
// the time a burst's PUBACKs take on a slow, loaded board (300 expired
// requests at once took 7.5 s to answer under -race on a loaded 2-core
// machine, and 5 s produced duplicates: TestSystemCommandFlood). An
// offline session fails at once (ErrNotConnected), so this only delays the
// retry on a connection that hangs without dropping.
const respondTimeout = 20 * time.Second

// response builds j's response.
func (e *Engine) response(j *job, st Status, code, reason string) Response {
	return Response{
		ID: j.id, Device: e.thing, Status: st, ReasonCode: code, Reason: reason,
		TS: e.now().UnixMilli(), State: e.snapshot(j), Topic: j.topic,
	}
}

// record makes j's final response durable under its id before anything
// else sees it: a command never actuated is recorded (Record), an actuated
// one finished (Finish, fsynced). A redelivery then gets this same answer
// and is never executed. With batched set the refusal is only buffered:
// the dispatcher fsyncs the whole batch before anything is acknowledged or
// published. It reports whether the result is recorded (a refusal is not
// when the ledger is full).
func (e *Engine) record(j *job, ref *refusal, begun, batched bool) (Response, bool) {
	resp := e.response(j, ref.status, ref.code, ref.reason)
	b, err := json.Marshal(resp)
	switch {
	case err != nil:
	case begun:
		err = e.ledger.Finish(j.id, e.now(), b)
	default:
		j.log.Info("command refused", "status", string(resp.Status), "reason_code", resp.ReasonCode, "reason", resp.Reason)
		// An admitted command already holds its entry (received).
		if _, known := e.ledger.Get(j.id); !known && !e.ledgerRoom() {
			j.log.Warn("command ledger full, refusal not recorded", "entries", e.cfg.MaxLedgerEntries)
			return resp, false
		}
		err = e.ledger.Record(j.id, j.req.Name, j.topic, e.expires(j), e.now(), b)
		if err == nil && !batched {
			err = e.ledger.Sync()
		}
	}
	if err != nil {
		j.log.Error("command ledger write failed", "err", err)
	}
	if begun && e.hooks.afterFinish != nil {
		e.hooks.afterFinish(j.id)
	}
	return resp, err == nil
}

// progress sends j's one IN_PROGRESS response (not recorded).
func (e *Engine) progress(j *job, code, reason string) {
	if j.progress {
		return
	}
	j.progress = true
	resp := e.response(j, StatusInProgress, code, reason)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(j.ctx), respondTimeout)
	defer cancel()
	if err := e.resp.Respond(ctx, resp); err != nil {
		j.log.Warn("command progress response failed", "err", err)
		return
	}
	j.log.Info("command in progress", "reason_code", code)
}

// deliver hands a final response to the responder (which returns once the
// broker acknowledged it) and marks it responded in the ledger. If the
// responder fails, the recorded result is handed over again every
// resendEvery and at the next start. It reports whether the response was
// delivered; it does nothing (false) while another delivery of the same id
// is under way.
func (e *Engine) deliver(ctx context.Context, log *slog.Logger, resp Response) bool {
	e.mu.Lock()
	if e.delivering[resp.ID] {
		e.mu.Unlock()
		return false
	}
	e.delivering[resp.ID] = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.delivering, resp.ID)
		e.mu.Unlock()
	}()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), respondTimeout)
	defer cancel()
	if err := e.resp.Respond(rctx, resp); err != nil {
		log.Warn("command response failed", "err", err)
		if ent, ok := e.ledger.Get(resp.ID); ok && ent.State == ledger.Done {
			e.markUnsent()
		}
		return false
	}
	e.stats.finished(resp.Status)
	if err := e.ledger.Responded(resp.ID, e.now()); err != nil && !errors.Is(err, ledger.ErrUnknown) {
		log.Warn("command ledger update failed", "err", err)
	} else if err == nil {
		e.kickMaintenance() // prunable once expired: arm the timer
	}
	log.Info("command finished", "status", string(resp.Status), "reason_code", resp.ReasonCode)
	return true
}

// reconcile answers, at start, the commands a previous run left without a
// delivered final response. A command interrupted after its ledger entry
// (so possibly actuated) is reported FAILED "interrupted" and never run
// again; one only received (admitted, never actuated) is REJECTED
// "agent_shutdown"; a recorded result is handed over again.
func (e *Engine) reconcile(ctx context.Context) {
	for _, ent := range e.ledger.Unfinished() {
		log := e.log.With("cmd_id", ent.ID)
		j := &job{ctx: ctx, log: log, id: ent.ID, topic: ent.Topic, spec: e.specs[ent.Name]}
		j.req.Name = ent.Name
		switch ent.State {
		case ledger.Executing:
			log.Warn("command interrupted by restart", "name", ent.Name)
			ref := refuse(StatusFailed, ReasonInterrupted,
				"agent restarted while executing %s; actuation may have happened, outcome unknown; not retried", ent.Name)
			resp, _ := e.record(j, ref, true, false)
			e.deliver(ctx, log, resp)
		case ledger.Received:
			log.Warn("command dropped by restart before actuation", "name", ent.Name)
			ref := refuse(StatusRejected, ReasonShutdown, "agent restarted before %s was actuated; not actuated", ent.Name)
			resp, _ := e.record(j, ref, false, false)
			e.deliver(ctx, log, resp)
		default:
			e.redeliver(ctx, log, ent)
		}
	}
}

// recorded decodes the final response recorded in ent.
func recorded(ent ledger.Entry) (Response, error) {
	var resp Response
	if err := json.Unmarshal(ent.Result, &resp); err != nil {
		return Response{}, fmt.Errorf("decode recorded result of %s: %w", ent.ID, err)
	}
	return resp, nil
}

// redeliver hands a recorded result to the responder again.
func (e *Engine) redeliver(ctx context.Context, log *slog.Logger, ent ledger.Entry) bool {
	resp, err := recorded(ent)
	if err != nil {
		log.Error("command ledger result unreadable", "err", err)
		return false
	}
	log.Info("command result redelivered", "status", string(resp.Status))
	return e.deliver(ctx, log, resp)
}

// ledgerRoom reports whether the ledger may take another entry, pruning
// first when it is full.
func (e *Engine) ledgerRoom() bool {
	if e.ledger.Len() < e.cfg.MaxLedgerEntries {
		return true
	}
	if _, err := e.ledger.Prune(e.now()); err != nil {
		e.log.Error("command ledger prune failed", "err", err)
	}
	return e.ledger.Len() < e.cfg.MaxLedgerEntries
}

// maintain prunes the ledger and retries results the responder refused;
// it reports whether the prune succeeded.
func (e *Engine) maintain(ctx context.Context) bool {
	n, err := e.ledger.Prune(e.now())
	if err != nil {
		e.log.Error("command ledger prune failed", "err", err)
	} else if n > 0 {
		e.log.Debug("command ledger pruned", "entries", n)
	}
	_ = e.resend(ctx)
	return err == nil
}

// resend hands recorded results not yet acknowledged by the broker to the
// responder again, oldest first; it stops at the first failure (offline)
// and reports whether all went out.
func (e *Engine) resend(ctx context.Context) bool {
	for _, ent := range e.ledger.Unfinished() {
		e.mu.Lock()
		busy := e.inflight[ent.ID] != nil || e.delivering[ent.ID] || e.queued[ent.ID] > 0
		e.mu.Unlock()
		if busy || ent.State != ledger.Done {
			continue
		}
		if !e.redeliver(ctx, e.log.With("cmd_id", ent.ID), ent) {
			e.markUnsent()
			return false
		}
	}
	return true
}
