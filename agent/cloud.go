package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/command"
	"github.com/tcu-agent/tcu-agent/agent/config"
	"github.com/tcu-agent/tcu-agent/agent/record"
	"github.com/tcu-agent/tcu-agent/agent/signals"
	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/buffer"
	"github.com/tcu-agent/tcu-agent/internal/backoff"
	"github.com/tcu-agent/tcu-agent/provisioning"
)

// shadowSignals are reported to the device shadow (last-known state).
var shadowSignals = []string{
	"Vehicle.Cabin.Door.Row1.DriverSide.IsLocked",
	"Vehicle.Cabin.Door.Row1.DriverSide.IsOpen",
	"Vehicle.Cabin.Door.Row1.PassengerSide.IsOpen",
	"Vehicle.Cabin.Door.Row2.DriverSide.IsOpen",
	"Vehicle.Cabin.Door.Row2.PassengerSide.IsOpen",
	"Vehicle.Body.Trunk.Rear.IsOpen",
	"Vehicle.Immobilizer.IsEngaged",
	"Vehicle.LowVoltageSystemState",
	"Vehicle.CurrentLocation.Latitude",
	"Vehicle.CurrentLocation.Longitude",
}

// claimRecheck is how often a missing claim is looked for again (also at
// once on Reload).
const claimRecheck = 30 * time.Second

// superviseCloud runs the cloud side (identity and provisioning, command
// engine, MQTT session) once the buffer is open, until ctx ends. Whatever
// the cloud side does — an error, a panic in its goroutine, a missing claim,
// a provisioning hold — it never ends capture: it reports the cause as the
// "cloud" degradation (health, status, sd_notify STATUS, metrics) and tries
// again after jittered backoff, after claimRecheck for a missing claim, at
// the hold's end for a hold, and at once on Reload.
func (a *Agent) superviseCloud(ctx context.Context, st *store) {
	select {
	case <-ctx.Done():
		return
	case <-st.ready:
	}
	q := st.queue()
	bo := backoff.New(time.Second, 2*time.Minute)
	lastLogged := ""
	for {
		wake := a.reloaded()
		start := time.Now()
		err := a.runCloudSafe(ctx, q)
		a.mu.Lock()
		a.session, a.engine = nil, nil
		a.mu.Unlock()
		a.wakes.set(nil)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			bo.Reset()
		}
		if err == nil {
			err = errors.New("cloud side returned without error before shutdown")
		}
		var wait time.Duration
		var reason string
		until, onHold := holdUntil(err)
		if onHold {
			wait = max(time.Until(until), time.Second)
			reason = fmt.Sprintf("provisioning on hold until %s (SIGHUP retries now): %v", until.UTC().Format(time.RFC3339), err)
		} else if isNoClaim(err) {
			wait = claimRecheck
			reason = fmt.Sprintf("waiting for the claim certificate (re-checked every %v and on SIGHUP): %v", claimRecheck, err)
		} else {
			wait = bo.Next()
			reason = fmt.Sprintf("cloud side failed, retrying with backoff: %v", err)
		}
		a.health.SetDegraded("cloud", reason)
		if reason != lastLogged {
			a.log.Error("cloud side not running; capture continues", "reason", reason, "retry_in", wait.Round(time.Millisecond))
			lastLogged = reason
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
			a.log.Info("cloud side: retrying now (reload)")
			if onHold {
				a.liftHold()
			}
		case <-time.After(wait):
		}
	}
}

// liftHold clears a persisted provisioning hold: SIGHUP is the operator's
// "try again now" (after fixing the template or the claim's policy). The
// certificate loop breaker is not reset: it trips again on the next
// attempt if the device has minted too many certificates.
func (a *Agent) liftHold() {
	p, err := a.provisioner()
	if err == nil {
		err = p.ResetHold()
	}
	if err != nil {
		a.log.Warn("reload: cannot lift the provisioning hold", "err", err)
		return
	}
	a.log.Info("reload: provisioning hold lifted")
}

// runCloudSafe is runCloud with a panic in its goroutine turned into an
// error.
func (a *Agent) runCloudSafe(ctx context.Context, q *buffer.Queue) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cloud side panicked: %v", r)
			a.log.Error("cloud side panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	return a.runCloud(ctx, q)
}

// runCloud resolves the identity (provisioning if needed), then runs the
// command engine and the MQTT session until ctx is done.
func (a *Agent) runCloud(ctx context.Context, q *buffer.Queue) error {
	thing, id, err := a.identity(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	log := a.log.With("thing", thing)
	a.health.Clear("cloud")

	cmdLoop := a.health.Loop("command", true)
	defer cmdLoop.Close()
	// engineCtx ends only after the MQTT session has stopped (see below).
	engineCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEngine()
	resp := &responder{q: q, log: &a.cmds, logger: log.With("component", "command")}
	engine, err := command.New(command.Options{
		Config: a.sec.Commands, Thing: thing, StateDir: a.cfg.Agent.StateDir, ConfigDir: a.cfg.Dir,
		Signals: a.signals, Transmitter: a.transmitter,
		Responder: resp, Now: a.now, ClockTrusted: a.clockTrusted,
		Logger:    log.With("component", "command"),
		Heartbeat: cmdLoop.Beat,
		Idle:      cmdLoop.Idle,
	})
	if err != nil {
		return fmt.Errorf("command engine: %w", err)
	}
	defer func() { _ = engine.Close() }()
	jc, jpub, err := a.jobsClient(thing, q, log)
	if err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	subs := engine.Topics()
	if jc != nil {
		subs = append(subs, jc.Topics()...)
		a.refreshBundle()
	}
	var certFn func() (*tls.Certificate, error)
	var cert atomic.Pointer[tls.Certificate]
	if id != nil {
		cert.Store(&id.Certificate)
		certFn = func() (*tls.Certificate, error) { return cert.Load(), nil }
	}
	sess, err := uplink.New(uplink.Options{
		Config: a.sec.MQTT, Thing: thing, Certificate: certFn, Queue: uplinkQueue{q},
		Subscriptions: subs,
		Handler: func(m uplink.Message) {
			if jc != nil && jc.Owns(m.Topic) {
				jc.HandleMessage(m.Topic, m.Payload)
				m.Ack()
				return
			}
			engine.HandleMessage(command.Message{Topic: m.Topic, Payload: m.Payload, Duplicate: m.Duplicate, Ack: m.Ack})
		},
		OnConnect: func() {
			if jc != nil {
				jc.Connected() // asks for work queued while offline; no polling
			}
		},
		Logger: log.With("component", "uplink"), Now: a.now, StateDir: a.cfg.Agent.StateDir,
	})
	if err != nil {
		return fmt.Errorf("mqtt session: %w", err)
	}
	resp.sess.Store(sess)
	shadow := uplink.NewShadow(uplink.ShadowOptions{Publisher: sess, Thing: thing, Logger: log.With("component", "shadow")})
	a.mu.Lock()
	a.session, a.engine = sess, engine
	a.mu.Unlock()
	a.wakes.set(engine)
	a.profileSession(sess, shadow)
	defer a.profileSession(nil, nil)

	var renewer *provisioning.Provisioner
	if id != nil && id.Source != provisioning.MethodStatic {
		if renewer, err = a.provisioner(); err != nil {
			return err
		}
	}

	var wg sync.WaitGroup
	if renewer != nil {
		wg.Go(func() { a.renewLoop(ctx, renewer, id, &cert, log) }) // stops with ctx
	}
	wg.Go(func() { // stops with engineCtx, after the session
		if err := engine.Run(engineCtx); err != nil {
			log.Error("command engine stopped", "err", err)
		}
	})
	if jc != nil {
		jpub.s.Store(sess)
		wg.Go(func() { _ = jc.Run(ctx) }) // stops with ctx
	}
	wg.Go(func() { _ = shadow.Run(ctx) })       // stops with ctx
	wg.Go(func() { a.feedShadow(ctx, shadow) }) // stops with ctx
	err = sess.Run(ctx)
	// The engine outlives the session: a request the session acknowledged
	// just before it stopped is still answered (at least REJECTED
	// agent_shutdown), and its response lands in the buffer.
	stopEngine()
	wg.Wait()
	resp.audit.Wait()
	return err
}

// identity returns the thing name and client certificate to connect with.
// A persisted identity wins; a plaintext development broker may run on the
// configured thing name; otherwise the device provisions itself (this
// blocks, retrying, until it succeeds or ctx ends; telemetry keeps being
// buffered meanwhile).
func (a *Agent) identity(ctx context.Context) (string, *provisioning.Identity, error) {
	id, err := provisioning.Load(a.cfg.Agent.StateDir)
	if err == nil {
		a.log.Info("identity loaded", "thing", id.Thing, "source", id.Source, "not_after", id.NotAfter)
		a.setIdentity(identityInfo{thing: id.Thing, source: id.Source, notAfter: id.NotAfter})
		return id.Thing, id, nil
	}
	if isStorageFault(err) {
		// The identity may well be intact: never provision it away.
		return "", nil, fmt.Errorf("read identity: %w", err)
	}
	if !errors.Is(err, provisioning.ErrNoIdentity) {
		a.log.Error("identity unreadable, provisioning again", "err", err)
	}
	if a.sec.devIdentity(a.cfg) {
		a.log.Warn("no identity: using configured thing name on a plaintext broker (development only)", "thing", a.cfg.Agent.ThingName)
		a.setIdentity(identityInfo{thing: a.cfg.Agent.ThingName, source: "development"})
		return a.cfg.Agent.ThingName, nil, nil
	}
	p, err := a.provisioner()
	if err != nil {
		return "", nil, err
	}
	a.setIdentity(identityInfo{source: "provisioning"})
	a.health.SetDegraded("cloud", "no identity yet: provisioning (retrying transient failures)")
	id, err = p.Ensure(ctx)
	if err != nil {
		return "", nil, err
	}
	a.log.Info("provisioned", "thing", id.Thing, "source", id.Source, "not_after", id.NotAfter)
	a.setIdentity(identityInfo{thing: id.Thing, source: id.Source, notAfter: id.NotAfter})
	return id.Thing, id, nil
}

// provisioner builds the provisioning state machine over the uplink's
// plain MQTT connection.
func (a *Agent) provisioner() (*provisioning.Provisioner, error) {
	return newProvisioner(a.cfg, a.sec, a.log, a.now, nil)
}

func newProvisioner(c *config.Config, sec *Sections, log *slog.Logger, now func() time.Time, progress func(string)) (*provisioning.Provisioner, error) {
	mqttCfg := sec.MQTT
	return provisioning.New(provisioning.Options{
		Config: sec.Provisioning, StateDir: c.Agent.StateDir, Logger: log.With("component", "provisioning"), Now: now,
		Progress: progress, EventTopicPrefix: mqttCfg.TopicPrefix, DeviceParams: deviceParams(c),
		Dial: func(ctx context.Context, cert tls.Certificate, clientID string) (provisioning.Conn, error) {
			c, err := uplink.DialConn(ctx, mqttCfg, cert, clientID, log.With("component", "provisioning_mqtt"))
			if errors.Is(err, uplink.ErrRefused) {
				// An authenticated refusal (e.g. a revoked claim) counts
				// towards a hold; a broker certificate we cannot verify
				// (uplink.ErrBrokerCert), DNS, TCP and timeouts do not.
				return nil, fmt.Errorf("%w: %w", provisioning.ErrUnauthorized, err)
			}
			if err != nil {
				return nil, err
			}
			return c, nil
		},
	})
}

// Provision runs provisioning in the foreground (tcu-agent provision):
// it returns the existing identity, or obtains one, calling progress with
// each step's name as it starts.
func Provision(ctx context.Context, c *config.Config, sec *Sections, log *slog.Logger, progress func(step string)) (*provisioning.Identity, error) {
	if err := os.MkdirAll(c.Agent.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	p, err := newProvisioner(c, sec, log, time.Now, progress)
	if err != nil {
		return nil, err
	}
	return p.Ensure(ctx)
}

// responder publishes command responses directly on the MQTT session
// (QoS 1) and returns once the broker acknowledged them: the engine's
// ledger then marks them responded, and retries the ones that failed
// (offline) until acknowledged, across restarts. Final responses are also
// queued as a command_result event (buffer, highest class) for the audit
// stream.
type responder struct {
	q      *buffer.Queue
	log    *commandLog
	logger *slog.Logger
	sess   atomic.Pointer[uplink.Session]
	audit  sync.WaitGroup // command_result events being queued
}

func (r *responder) Respond(ctx context.Context, resp command.Response) error {
	r.log.record(resp) // the status shows the latest answer, delivered or not
	payload, err := resp.Payload()
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	s := r.sess.Load()
	if s == nil {
		return fmt.Errorf("publish response: %w", uplink.ErrNotConnected)
	}
	if err := s.Publish(ctx, resp.Topic, payload); err != nil {
		return err
	}
	if resp.Final() {
		// Off the response path: the engine marks the response delivered
		// as soon as this returns, and the buffer's group commit must not
		// widen the window in which a crash re-sends it.
		r.audit.Go(func() {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			r.queueResult(actx, resp)
		})
	}
	return nil
}

// queueResult queues a final response's command_result audit event.
func (r *responder) queueResult(ctx context.Context, resp command.Response) {
	ev, err := json.Marshal(struct {
		ID         string             `json:"id"`
		Status     command.Status     `json:"status"`
		ReasonCode string             `json:"reason_code"`
		State      map[string]float64 `json:"state,omitempty"`
	}{resp.ID, resp.Status, resp.ReasonCode, resp.State})
	if err == nil {
		var b []byte
		if b, err = (record.Record{Kind: record.KindCommandResult, Time: resp.Time(), Body: ev}).Marshal(); err == nil {
			_, err = r.q.Append(ctx, buffer.ClassCritical, b)
		}
	}
	if err != nil {
		r.logger.Warn("command result event not queued", "cmd_id", resp.ID, "err", err)
	}
}

// feedShadow pushes the agent version once and the shadowed signals
// whenever the signal table changes; the shadow itself publishes only what
// changed, coalesced.
func (a *Agent) feedShadow(ctx context.Context, sh *uplink.Shadow) {
	sh.Update("agent_version", a.version)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { a.feedBundle(ctx, sh) }) // ends with ctx
	feedSignals(ctx, a.signals, shadowSignals, sh.Update, shadowFeedEvery)
}

// feedBundle reports the active configuration bundle in the shadow now
// and whenever it changes (it blocks, costing no wake-ups, in between).
func (a *Agent) feedBundle(ctx context.Context, sh *uplink.Shadow) {
	for {
		if b := a.bundle.Load(); b != nil {
			sh.Update("config_bundle", map[string]string{"version": b.Version, "sha256": b.SHA256})
		}
		select {
		case <-ctx.Done():
			return
		case <-a.bundleSet:
		}
	}
}

// shadowFeedEvery is the shortest time between two passes of feedSignals.
const shadowFeedEvery = time.Second

// feedSignals calls update with the latest value of each of names now and
// after every change of the signal table, at most once per every. It
// waits on the table (no timer) while nothing changes: a parked car's
// silent bus costs no wake-ups. It returns when ctx ends.
func feedSignals(ctx context.Context, sig *signals.Store, names []string, update func(string, any), every time.Duration) {
	t := time.NewTimer(every)
	t.Stop() // armed only after a change
	defer t.Stop()
	for {
		changed := sig.Changed()
		for _, name := range names {
			if s, ok := sig.Latest(name); ok {
				update(name, s.Value)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		t.Reset(every) // coalesce a burst of changes (63 frames/s) into one pass
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Agent) setIdentity(id identityInfo) {
	a.mu.Lock()
	a.ident = id
	a.mu.Unlock()
}
