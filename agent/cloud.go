package agent

import (
	"log/slog"
	"os"

	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/command"
	"github.com/tcu-agent/tcu-agent/agent/config"
	"github.com/tcu-agent/tcu-agent/agent/record"
	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/buffer"
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

	cmdLoop := a.health.Loop("command", true)
	defer cmdLoop.Close()
	// engineCtx ends only after the MQTT session has stopped (see below).
	engineCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEngine()
	engine, err := command.New(command.Options{
		Config: a.sec.Commands, Thing: thing, StateDir: a.cfg.Agent.StateDir, ConfigDir: a.cfg.Dir,
		Signals: a.signals, Transmitter: a.transmitter,
		Responder: &responder{q: q, log: &a.cmds}, Now: a.now, ClockTrusted: a.clockTrusted,
		Logger:    log.With("component", "command"),
		Heartbeat: cmdLoop.Beat,
	})
	if err != nil {
		return fmt.Errorf("command engine: %w", err)
	}
	defer engine.Close()
	var certFn func() (*tls.Certificate, error)
	var cert atomic.Pointer[tls.Certificate]
	if id != nil {
		cert.Store(&id.Certificate)
		certFn = func() (*tls.Certificate, error) { return cert.Load(), nil }
	}
	sess, err := uplink.New(uplink.Options{
		Config: a.sec.MQTT, Thing: thing, Certificate: certFn, Queue: uplinkQueue{q},
		Subscriptions: engine.Topics(),
		Handler:       func(topic string, payload []byte) { engine.Handle(engineCtx, topic, payload) },
		Logger:        log.With("component", "uplink"), Now: a.now,
	})
	if err != nil {
		return fmt.Errorf("mqtt session: %w", err)
	}
	shadow := uplink.NewShadow(uplink.ShadowOptions{Publisher: sess, Thing: thing, Logger: log.With("component", "shadow")})
	a.mu.Lock()
	a.session, a.engine = sess, engine
	a.mu.Unlock()

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
	wg.Go(func() { _ = shadow.Run(ctx) })       // stops with ctx
	wg.Go(func() { a.feedShadow(ctx, shadow) }) // stops with ctx
	err = sess.Run(ctx)
	// The engine outlives the session: a request the session acknowledged
	// just before it stopped is still answered (at least REJECTED
	// agent_shutdown), and its response lands in the buffer.
	stopEngine()
	wg.Wait()
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
		Progress: progress, DeviceParams: deviceParams(c),
		Dial: func(ctx context.Context, cert tls.Certificate, clientID string) (provisioning.Conn, error) {
			c, err := uplink.DialConn(ctx, mqttCfg, cert, clientID, log.With("component", "provisioning_mqtt"))
			if errors.Is(err, uplink.ErrAuth) {
				// A refused certificate (e.g. a revoked claim) is a
				// rejection, not a network failure to retry fast.
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

// responder enqueues command responses in the buffer's highest class: the
// response itself as a direct message, and final ones also as a
// command_result event for the audit stream.
type responder struct {
	q   *buffer.Queue
	log *commandLog
}

func (r *responder) Respond(ctx context.Context, resp command.Response) error {
	r.log.record(resp)
	payload, err := resp.Payload()
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	b, err := record.Record{Kind: record.KindCommandResponse, Time: resp.Time(), Topic: resp.Topic, Body: payload}.Marshal()
	if err != nil {
		return err
	}
	if _, err := r.q.Append(ctx, buffer.ClassCritical, b); err != nil {
		return fmt.Errorf("enqueue response: %w", err)
	}
	if !resp.Final() {
		return nil
	}
	ev, err := json.Marshal(struct {
		ID         string             `json:"id"`
		Status     command.Status     `json:"status"`
		ReasonCode string             `json:"reason_code"`
		State      map[string]float64 `json:"state,omitempty"`
	}{resp.ID, resp.Status, resp.ReasonCode, resp.State})
	if err != nil {
		return err
	}
	b, err = record.Record{Kind: record.KindCommandResult, Time: resp.Time(), Body: ev}.Marshal()
	if err != nil {
		return err
	}
	_, err = r.q.Append(ctx, buffer.ClassCritical, b)
	return err
}

// feedShadow pushes the shadowed signals and the agent version once a
// second; the shadow itself publishes only what changed, coalesced.
func (a *Agent) feedShadow(ctx context.Context, sh *uplink.Shadow) {
	sh.Update("agent_version", a.version)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		for _, name := range shadowSignals {
			if s, ok := a.signals.Latest(name); ok {
				sh.Update(name, s.Value)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (a *Agent) setIdentity(id identityInfo) {
	a.mu.Lock()
	a.ident = id
	a.mu.Unlock()
}
