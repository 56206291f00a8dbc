package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/command"
	"github.com/tcu-agent/tcu-agent/agent/config"
	"github.com/tcu-agent/tcu-agent/agent/ctl"
	"github.com/tcu-agent/tcu-agent/agent/jobs"
	"github.com/tcu-agent/tcu-agent/agent/jobs/abstore"
	"github.com/tcu-agent/tcu-agent/agent/jobs/bundle"
	"github.com/tcu-agent/tcu-agent/agent/record"
	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/buffer"
)

// maxDecodeErrorRate is the share of frames that may fail to decode while
// a new configuration is proven (a DBC that does not fit the bus).
const maxDecodeErrorRate = 0.05

// ConfigStoreDir is where the A/B configuration store lives.
func ConfigStoreDir(stateDir string) string { return filepath.Join(stateDir, "config") }

// restarter carries a restart request from the jobs runner to the
// process (cmd/tcu-agent re-executes itself after a clean stop).
type restarter struct {
	once      sync.Once
	ch        chan string
	requested atomic.Bool
}

// RestartRequested is closed-over by the process: it receives the
// reason when the agent wants a restart (a configuration that cannot be
// applied in process). The caller stops the agent (cancels Run's
// context), waits for Run and re-executes itself.
func (a *Agent) RestartRequested() <-chan string { return a.restart.ch }

func (a *Agent) requestRestart(reason string) {
	a.restart.once.Do(func() {
		a.restart.requested.Store(true)
		a.log.Warn("restart requested", "reason", reason)
		a.restart.ch <- reason // buffered 1, sent once
	})
}

// jobsClient builds the jobs client for thing when [jobs] is on (nil
// otherwise); Run it after the session exists.
func (a *Agent) jobsClient(thing string, q *buffer.Queue, log *slog.Logger) (*jobs.Client, *jobsPublisher, error) {
	jc := a.sec.Jobs
	if !jc.On() {
		return nil, nil, nil
	}
	log = log.With("component", "jobs")
	keys, err := command.LoadPublicKeys(jc.PublicKeys, a.cfg.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("[jobs] public_keys: %w", err)
	}
	if len(keys) == 0 {
		log.Warn("[jobs] is enabled without public_keys: every configuration job will be REJECTED")
	}
	store, err := abstore.Open(ConfigStoreDir(a.cfg.Agent.StateDir))
	if err != nil {
		return nil, nil, err
	}
	h := &proveHealth{a: a}
	run, err := jobs.NewRunner(jobs.RunnerOptions{
		Store: store, Keys: keys, BasePath: a.basePath(),
		Fetch: bundle.FetchOptions{MaxSize: int64(jc.MaxBundleSize), Timeout: jc.DownloadTimeout.Std(),
			CAFile: jc.CAFile, Logger: log},
		ProvingTime: jc.ProvingTime.Std(),
		Check:       a.checkBundle,
		Apply:       a.applyPath,
		Restart:     a.requestRestart,
		Healthy:     h.healthy,
		Report:      func(o jobs.Outcome) { a.jobOutcome(q, o, log) },
		Logger:      log, Now: a.now,
	})
	if err != nil {
		return nil, nil, err
	}
	pub := &jobsPublisher{}
	c, err := jobs.New(jobs.Options{Thing: thing, Publisher: pub, Handler: run, Logger: log,
		Connects: func() uint64 {
			if s := pub.s.Load(); s != nil {
				return s.Stats().Connects
			}
			return 0
		}})
	if err != nil {
		return nil, nil, err
	}
	return c, pub, nil
}

// jobsPublisher publishes on the session once it exists.
type jobsPublisher struct {
	s atomic.Pointer[uplink.Session]
}

func (p *jobsPublisher) Publish(ctx context.Context, topic string, payload []byte) error {
	s := p.s.Load()
	if s == nil {
		return uplink.ErrNotConnected
	}
	return s.Publish(ctx, topic, payload)
}

// basePath is the --config file (the running config when no bundle is
// active; BaseFile otherwise).
func (a *Agent) basePath() string {
	if a.baseFile != "" {
		return a.baseFile
	}
	return a.cfg.File
}

// checkBundle loads path with the check-config loader and refuses what a
// bundle may not change: the state dir and the identity.
func (a *Agent) checkBundle(path string) error {
	cfg, sec, err := LoadConfig(path)
	if err != nil {
		return err
	}
	bad := func(key, msg string) error {
		return &config.Error{File: path, Line: 1, Key: key, Msg: msg}
	}
	switch {
	case cfg.Agent.StateDir != a.cfg.Agent.StateDir:
		return bad("agent.state_dir", fmt.Sprintf("a bundle may not change [agent] state_dir (running %s)", a.cfg.Agent.StateDir))
	case cfg.Agent.ThingName != a.cfg.Agent.ThingName:
		return bad("agent.thing_name", "a bundle may not change the identity ([agent] thing_name)")
	case !reflect.DeepEqual(sec.Provisioning, a.sec.Provisioning):
		return bad("provisioning", "a bundle may not change the [provisioning] section")
	case sec.MQTT.Broker != a.sec.MQTT.Broker || sec.MQTT.CAFile != a.sec.MQTT.CAFile:
		return bad("mqtt", "a bundle may not change the broker or its CA (identity)")
	}
	return nil
}

// applyPath applies the configuration at path through ApplyConfig.
func (a *Agent) applyPath(ctx context.Context, path string) (bool, error) {
	cfg, _, err := LoadConfig(path)
	if err != nil {
		return false, err
	}
	cfg.Agent.StateDir = a.cfg.Agent.StateDir
	res, err := a.ApplyConfig(ctx, cfg, path)
	if err != nil {
		return false, err
	}
	if !res.Live {
		a.log.Info("configuration needs a restart", "sections", res.RestartSections)
	}
	return res.Live, nil
}

// proveHealth is the health a configuration on trial must keep: drivers
// running, decode errors at most maxDecodeErrorRate of the frames since
// the last check, uplink connected, watchdog loops alive.
type proveHealth struct {
	a              *Agent
	frames, decErr uint64
}

func (h *proveHealth) healthy() (bool, string) {
	a := h.a
	if ok, why := a.health.Healthy(proveMaxAge); !ok {
		return false, "watchdog: " + why
	}
	if s := a.currentSession(); s == nil || !s.Connected() {
		return false, "uplink not connected"
	}
	var frames, decErr uint64
	for _, s := range a.supervisors() {
		if state, _, lastErr := s.status(); state != driverRunning {
			return false, fmt.Sprintf("driver %s %s: %s", s.name, state, lastErr)
		}
		c := driverCounters(s.drv)
		frames += c["frames"]
		decErr += c["decode_errors"]
	}
	if frames < h.frames || decErr < h.decErr {
		// A live apply replaced a driver: its counters start again
		// from 0. Take this check as the new baseline (no wrap-around).
		h.frames, h.decErr = frames, decErr
		return true, "ok"
	}
	df, de := frames-h.frames, decErr-h.decErr
	h.frames, h.decErr = frames, decErr
	if df > 0 && float64(de)/float64(df) > maxDecodeErrorRate {
		return false, fmt.Sprintf("decode errors %d of %d frames (more than %.0f%%)", de, df, maxDecodeErrorRate*100)
	}
	return true, "ok"
}

// jobOutcome records a job's end: the audit event and the status.
func (a *Agent) jobOutcome(q *buffer.Queue, o jobs.Outcome, log *slog.Logger) {
	a.lastJob.Store(&o)
	a.refreshBundle()
	body, err := json.Marshal(struct {
		Event   string `json:"event"`
		JobID   string `json:"job_id"`
		Version string `json:"version,omitempty"`
		SHA256  string `json:"sha256,omitempty"`
		Outcome string `json:"outcome"`
		Reason  string `json:"reason,omitempty"`
		Detail  string `json:"detail,omitempty"`
	}{"config_job", o.JobID, o.Version, o.SHA256, o.Status, o.Reason, o.Detail})
	if err == nil {
		var b []byte
		if b, err = (record.Record{Kind: record.KindEvent, Time: a.now(), Body: body}).Marshal(); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err = q.Append(ctx, buffer.ClassEvent, b)
			cancel()
		}
	}
	if err != nil {
		log.Warn("config job audit event not queued", "job_id", o.JobID, "err", err)
	}
}

// refreshBundle re-reads the active bundle from the store.
func (a *Agent) refreshBundle() {
	store, err := abstore.Open(ConfigStoreDir(a.cfg.Agent.StateDir))
	if err != nil {
		return
	}
	st, err := store.Load()
	if err != nil {
		return
	}
	slot, meta := st.Active()
	b := &ctl.ConfigBundle{Slot: slot, Version: meta.Version, SHA256: meta.SHA256, JobID: meta.JobID, Trial: st.Trial != nil}
	if slot == "" {
		b.Version = "base"
	}
	a.bundle.Store(b)
	select { // wake feedBundle; one pending wake is enough
	case a.bundleSet <- struct{}{}:
	default:
	}
}

// bundleStatus returns what `tcu-agent status` shows about configuration.
func (a *Agent) bundleStatus() *ctl.ConfigBundle {
	if !a.sec.Jobs.On() {
		return nil
	}
	b := a.bundle.Load()
	if b == nil {
		return nil
	}
	c := *b
	if o := a.lastJob.Load(); o != nil {
		c.LastJob = &ctl.ConfigJob{ID: o.JobID, Version: o.Version, Status: o.Status, Reason: o.Reason}
	}
	return &c
}
