package jobs

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/jobs/abstore"
	"github.com/tcu-agent/tcu-agent/agent/jobs/bundle"
)

// MaxBoots is how many starts a configuration on trial gets without
// becoming healthy before the store rolls it back (crash_loop).
const MaxBoots = 3

// Outcome is a job's end, for the audit event and the status.
type Outcome struct {
	JobID   string `json:"job_id"`
	Version string `json:"version,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

// RunnerOptions configure a Runner.
type RunnerOptions struct {
	Store *abstore.Store
	// Keys verify bundle signatures; none: every bundle is refused.
	Keys  []ed25519.PublicKey
	Fetch bundle.FetchOptions
	// BasePath is the operator's --config file: the last-known-good when
	// no bundle was ever committed.
	BasePath string
	// ProvingTime is how long a new configuration must stay healthy.
	ProvingTime time.Duration
	// UnhealthyGrace is how long it may be unhealthy in a row while
	// proving before it is rolled back (default ProvingTime/2, ≥ 10 s).
	UnhealthyGrace time.Duration
	// HealthEvery is the health check interval (default 2 s).
	HealthEvery time.Duration
	// Check loads path exactly as `tcu-agent check-config` does and
	// refuses changes bundles may not make; errors name file:line.
	Check func(path string) error
	// Apply makes path the running configuration: live (in process) when
	// possible; live=false means a restart is needed, which Restart does.
	Apply func(ctx context.Context, path string) (live bool, err error)
	// Restart stops the agent cleanly and re-executes the process; it may
	// return (the process is on its way out; ctx ends).
	Restart func(reason string)
	// Healthy reports the agent's health for proving.
	Healthy func() (ok bool, why string)
	// Report is told every job outcome (audit event, status).
	Report func(Outcome)
	Logger *slog.Logger
	Now    func() time.Time
}

// Runner is the Handler for tcu.config.v1 jobs.
type Runner struct{ o RunnerOptions }

// NewRunner returns a Runner.
func NewRunner(o RunnerOptions) (*Runner, error) {
	if o.Store == nil || o.Check == nil || o.Apply == nil || o.Restart == nil || o.Healthy == nil {
		return nil, errors.New("jobs runner: Store, Check, Apply, Restart and Healthy are required")
	}
	if o.ProvingTime <= 0 {
		o.ProvingTime = 2 * time.Minute
	}
	if o.UnhealthyGrace <= 0 {
		o.UnhealthyGrace = max(o.ProvingTime/2, 10*time.Second)
	}
	if o.HealthEvery <= 0 {
		o.HealthEvery = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Report == nil {
		o.Report = func(Outcome) {}
	}
	return &Runner{o: o}, nil
}

// Run handles one execution (Handler).
func (r *Runner) Run(ctx context.Context, j *Job) {
	log := r.o.Logger.With("job_id", j.JobID)
	st, err := r.o.Store.Load()
	if err != nil {
		log.Error("jobs: config store unreadable", "err", err)
		r.finish(ctx, j, Outcome{Status: StatusFailed, Reason: bundle.ReasonInvalidConfig, Detail: err.Error()})
		return
	}
	switch {
	case st.Result != nil && st.Result.JobID == j.JobID:
		// Decided while this execution was not being run (crash loop,
		// commit just before a restart): report it.
		meta := metaOf(st, j.JobID)
		r.finish(ctx, j, Outcome{Version: meta.Version, SHA256: meta.SHA256, Status: st.Result.Status,
			Reason: st.Result.Reason, Detail: st.Result.Detail})
		return
	case st.Trial != nil && st.Trial.JobID == j.JobID:
		r.prove(ctx, j, log)
		return
	case st.Trial != nil:
		// The job that started this trial is gone (cancelled, deleted):
		// nobody will accept its result, so the last-known-good returns.
		log.Warn("jobs: rolling back a trial whose job is gone", "trial_job", st.Trial.JobID)
		if _, err := r.o.Store.Rollback("canceled", "its job is gone"); err != nil {
			log.Error("jobs: rollback", "err", err)
			return
		}
		if restarted := r.applyGood(ctx, log); restarted {
			return // the new start runs this job
		}
	}
	r.fresh(ctx, j, log)
}

func metaOf(st abstore.State, jobID string) abstore.Meta {
	if st.GoodMeta.JobID == jobID {
		return st.GoodMeta
	}
	return abstore.Meta{JobID: jobID}
}

// fresh verifies, stages and applies a new bundle.
func (r *Runner) fresh(ctx context.Context, j *Job, log *slog.Logger) {
	limit := r.o.Fetch.MaxSize
	if limit <= 0 {
		limit = 16 << 20
	}
	d, err := bundle.ParseDocument(j.JobDocument, limit)
	if err != nil {
		r.finish(ctx, j, refusal(err, StatusRejected))
		return
	}
	fail := func(err error, status string) {
		o := refusal(err, status)
		o.Version, o.SHA256 = d.Version, d.SHA256
		r.finish(ctx, j, o)
	}
	if err := d.VerifySignature(r.o.Keys); err != nil {
		fail(err, StatusRejected)
		return
	}
	if !r.progress(ctx, j, "downloading", d.Version) {
		return
	}
	data, err := bundle.Fetch(ctx, d, r.o.Fetch)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		status := StatusFailed
		if bundle.ReasonOf(err, "") == bundle.ReasonTooLarge {
			status = StatusRejected
		}
		fail(err, status)
		return
	}
	if !r.progress(ctx, j, "verifying", d.Version) {
		return
	}
	if err := d.CheckBytes(data); err != nil {
		fail(err, StatusRejected)
		return
	}
	entries, err := bundle.Parse(data, limit)
	if err != nil {
		fail(err, StatusRejected)
		return
	}
	slot, err := r.o.Store.Stage(entries)
	if err != nil {
		if errors.Is(err, abstore.ErrBusy) {
			fail(bundle.Fail(bundle.ReasonBusy, "%v", err), StatusRejected)
			return
		}
		log.Error("jobs: cannot stage the bundle", "err", err)
		fail(bundle.Fail(bundle.ReasonInvalidConfig, "stage: %v", err), StatusFailed)
		return
	}
	path := r.o.Store.ConfigPath(slot)
	if err := r.o.Check(path); err != nil {
		fail(bundle.Fail(bundle.ReasonInvalidConfig, "%s", relativize(err.Error(), filepath.Dir(path))), StatusRejected)
		return
	}
	if !r.progress(ctx, j, "applying", d.Version) {
		return
	}
	if err := r.o.Store.BeginTrial(slot, abstore.Meta{JobID: j.JobID, Version: d.Version, SHA256: d.SHA256}, r.o.Now()); err != nil {
		log.Error("jobs: cannot start the trial", "err", err)
		fail(bundle.Fail(bundle.ReasonInvalidConfig, "begin trial: %v", err), StatusFailed)
		return
	}
	log.Info("jobs: applying configuration bundle", "version", d.Version, "sha256", d.SHA256, "slot", slot)
	live, err := r.o.Apply(ctx, path)
	if err != nil {
		r.rollback(ctx, j, log, bundle.ReasonUnhealthy, "apply: "+err.Error())
		return
	}
	if !live {
		r.o.Restart("configuration bundle " + d.Version)
		return
	}
	r.prove(ctx, j, log)
}

// prove watches health until the trial has been healthy for ProvingTime
// (commit: SUCCEEDED) or unhealthy for UnhealthyGrace (rollback: FAILED).
func (r *Runner) prove(ctx context.Context, j *Job, log *slog.Logger) {
	st, err := r.o.Store.Load()
	if err != nil || st.Trial == nil {
		return
	}
	if !r.progress(ctx, j, "proving", st.Trial.Version) {
		return
	}
	healthySince := r.o.Now()
	var unhealthySince time.Time
	tick := time.NewTicker(r.o.HealthEvery)
	defer tick.Stop()
	for {
		now := r.o.Now()
		ok, why := r.o.Healthy()
		switch {
		case ok:
			unhealthySince = time.Time{}
			if now.Sub(healthySince) >= r.o.ProvingTime {
				st, err := r.o.Store.Commit()
				if err != nil {
					log.Error("jobs: commit", "err", err)
					return
				}
				log.Info("jobs: configuration proven, now the last-known-good", "version", st.GoodMeta.Version)
				r.finish(ctx, j, Outcome{Version: st.GoodMeta.Version, SHA256: st.GoodMeta.SHA256, Status: StatusSucceeded})
				return
			}
		default:
			healthySince = now
			if unhealthySince.IsZero() {
				unhealthySince = now
			}
			if now.Sub(unhealthySince) >= r.o.UnhealthyGrace {
				r.rollback(ctx, j, log, bundle.ReasonUnhealthy, why)
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// rollback returns to the last-known-good and reports FAILED.
func (r *Runner) rollback(ctx context.Context, j *Job, log *slog.Logger, reason, detail string) {
	log.Warn("jobs: rolling back to the last-known-good configuration", "reason", reason, "detail", detail)
	st, err := r.o.Store.Load()
	if err != nil {
		log.Error("jobs: rollback", "err", err)
		return
	}
	var meta abstore.Meta
	if st.Trial != nil {
		meta = st.Trial.Meta
	}
	if _, err := r.o.Store.Rollback(reason, detail); err != nil {
		log.Error("jobs: rollback", "err", err)
		return
	}
	if r.applyGood(ctx, log) {
		return // the result is reported after the restart
	}
	r.finish(ctx, j, Outcome{Version: meta.Version, SHA256: meta.SHA256, Status: StatusFailed, Reason: reason, Detail: detail})
}

// applyGood applies the last-known-good configuration; it reports
// whether a restart was started instead.
func (r *Runner) applyGood(ctx context.Context, log *slog.Logger) bool {
	st, err := r.o.Store.Load()
	if err != nil {
		log.Error("jobs: rollback", "err", err)
		return false
	}
	path := r.o.Store.ConfigPath(st.Good)
	if path == "" {
		path = r.o.BasePath
	}
	live, err := r.o.Apply(ctx, path)
	if err != nil || !live {
		if err != nil {
			log.Error("jobs: applying the last-known-good in process failed: restarting", "err", err)
		}
		r.o.Restart("rollback to the last-known-good configuration")
		return true
	}
	return false
}

// progress reports a step; false when the job cannot go on.
func (r *Runner) progress(ctx context.Context, j *Job, step, version string) bool {
	err := j.Update(ctx, StatusInProgress, map[string]string{"step": step, "version": version})
	if err != nil {
		r.o.Logger.Warn("jobs: progress update failed", "job_id", j.JobID, "step", step, "err", err)
		return false
	}
	return true
}

// finish sends the terminal status, tells Report and forgets the result.
func (r *Runner) finish(ctx context.Context, j *Job, o Outcome) {
	o.JobID = j.JobID
	details := map[string]string{"reason": o.Reason, "detail": Truncate(o.Detail, 1024), "version": o.Version}
	err := j.Update(ctx, o.Status, details)
	if err != nil && !errors.Is(err, ErrGone) {
		r.o.Logger.Warn("jobs: final status not delivered; reported again when the job is resumed", "job_id", j.JobID, "err", err)
		return
	}
	r.o.Logger.Info("jobs: job finished", "job_id", j.JobID, "status", o.Status, "reason", o.Reason, "version", o.Version)
	r.o.Report(o)
	if err := r.o.Store.ClearResult(j.JobID); err != nil {
		r.o.Logger.Warn("jobs: clear result", "err", err)
	}
}

// refusal turns a bundle error into an outcome.
func refusal(err error, status string) Outcome {
	return Outcome{Status: status, Reason: bundle.ReasonOf(err, bundle.ReasonInvalidConfig), Detail: err.Error()}
}

// relativize shortens the slot directory out of configuration errors:
// "/var/lib/tcu-agent/config/b/tcu-agent.toml:12: ..." becomes
// "tcu-agent.toml:12: ...".
func relativize(msg, dir string) string {
	return strings.ReplaceAll(msg, dir+string(filepath.Separator), "")
}
