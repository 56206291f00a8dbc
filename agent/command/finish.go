package command

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/command/ledger"
)

// respondTimeout bounds one hand-over to the responder.
const respondTimeout = 5 * time.Second

// response builds j's response.
func (e *Engine) response(j *job, st Status, code, reason string) Response {
	return Response{
		ID: j.id, Device: e.thing, Status: st, ReasonCode: code, Reason: reason,
		TS: e.now().UnixMilli(), State: e.snapshot(j), Topic: j.topic,
	}
}

// record makes j's final response durable under its id before anything
// else sees it: a command never actuated is inserted (Record), an actuated
// one finished (Finish). A redelivery then gets this same answer and is
// never executed.
func (e *Engine) record(j *job, ref *refusal, begun bool) Response {
	resp := e.response(j, ref.status, ref.code, ref.reason)
	b, err := json.Marshal(resp)
	switch {
	case err != nil:
	case begun:
		err = e.ledger.Finish(j.id, e.now(), b)
	default:
		j.log.Info("command refused", "status", string(resp.Status), "reason_code", resp.ReasonCode, "reason", resp.Reason)
		if !e.ledgerRoom() {
			j.log.Warn("command ledger full, refusal not recorded", "entries", e.cfg.MaxLedgerEntries)
			break
		}
		err = e.ledger.Record(j.id, j.req.Name, j.topic, e.expires(j), e.now(), b)
	}
	if err != nil {
		j.log.Error("command ledger write failed", "err", err)
	}
	if begun && e.hooks.afterFinish != nil {
		e.hooks.afterFinish(j.id)
	}
	return resp
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

// deliver hands a final response to the responder and marks it answered.
// If the responder fails, the recorded result is handed over again by the
// next maintenance pass or at the next start.
func (e *Engine) deliver(ctx context.Context, log *slog.Logger, resp Response) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), respondTimeout)
	defer cancel()
	if err := e.resp.Respond(rctx, resp); err != nil {
		log.Error("command response failed", "err", err)
		return
	}
	e.stats.finished(resp.Status)
	if err := e.ledger.Responded(resp.ID, e.now()); err != nil {
		log.Warn("command ledger update failed", "err", err)
	}
	log.Info("command finished", "status", string(resp.Status), "reason_code", resp.ReasonCode)
}

// reconcile answers, at start, the commands a previous run left without a
// delivered final response. A command interrupted after its ledger entry
// (so possibly actuated) is reported FAILED "interrupted" and never run
// again; a recorded result is handed over again.
func (e *Engine) reconcile(ctx context.Context) {
	for _, ent := range e.ledger.Unfinished() {
		log := e.log.With("cmd_id", ent.ID)
		if ent.State == ledger.Executing {
			j := &job{ctx: ctx, log: log, id: ent.ID, topic: ent.Topic, spec: e.specs[ent.Name]}
			j.req.Name = ent.Name
			log.Warn("command interrupted by restart", "name", ent.Name)
			ref := refuse(StatusFailed, ReasonInterrupted,
				"agent restarted while executing %s; actuation may have happened, outcome unknown; not retried", ent.Name)
			e.deliver(ctx, log, e.record(j, ref, true))
			continue
		}
		e.redeliver(ctx, log, ent)
	}
}

// redeliver hands a recorded result to the responder again.
func (e *Engine) redeliver(ctx context.Context, log *slog.Logger, ent ledger.Entry) {
	var resp Response
	if err := json.Unmarshal(ent.Result, &resp); err != nil {
		log.Error("command ledger result unreadable", "err", err)
		return
	}
	log.Info("command result redelivered", "status", string(resp.Status))
	e.deliver(ctx, log, resp)
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

// maintain prunes the ledger and retries results the responder refused.
func (e *Engine) maintain(ctx context.Context) {
	if n, err := e.ledger.Prune(e.now()); err != nil {
		e.log.Error("command ledger prune failed", "err", err)
	} else if n > 0 {
		e.log.Debug("command ledger pruned", "entries", n)
	}
	for _, ent := range e.ledger.Unfinished() {
		e.mu.Lock()
		busy := e.inflight[ent.ID] != nil
		e.mu.Unlock()
		if busy || ent.State != ledger.Done {
			continue
		}
		e.redeliver(ctx, e.log.With("cmd_id", ent.ID), ent)
	}
}
