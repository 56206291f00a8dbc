package agenttest

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/ctl"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

// LogsEnv names the environment variable that, when set, writes every
// agent run's stderr to the test log even when the test passes.
const LogsEnv = "AGENTTEST_LOGS"

// Options configure a System. Zero values keep configs/demo.toml's.
type Options struct {
	// Binary is the tcu-agent binary (from Build); required.
	Binary string
	// Thing is the thing name; default "agenttest-car-001".
	Thing string
	// Scenario is the simulated vehicle's scenario (sim.ScenarioParked
	// when empty).
	Scenario string
	// BodyDelay is the body controller's response time (sim default when 0).
	BodyDelay time.Duration
	// TelemetryInterval replaces [telemetry] interval ("100ms").
	TelemetryInterval string
	// ExtraEvents are added to [telemetry] events.
	ExtraEvents []string
	// BackoffMax replaces [mqtt] backoff_max ("2s").
	BackoffMax string
	// Broker, when set (host:port), is an external broker (e.g. Debian's
	// mosquitto) the agent connects to instead of the dev cloud; the dev
	// cloud's observers (Stream, Responses) then see nothing from it.
	Broker string
	// BrokerDown leaves the broker stopped after Start (its address is
	// fixed all the same); StartBroker starts it.
	BrokerDown bool
	// EditConfig, if set, rewrites the generated config text.
	EditConfig func(string) string
	// Env is added to the agent's environment (KEY=value), e.g. a
	// NOTIFY_SOCKET and WATCHDOG_USEC standing in for systemd.
	Env []string
}

// System is the in-process half of a system test (simulated vehicle,
// virtual CAN bus, dev cloud broker and observers of all three) plus the
// agent subprocesses started on it.
type System struct {
	t       testing.TB
	opts    Options
	dir     string
	cfgPath string
	ctlPath string
	db      *dbc.Database
	ctx     context.Context

	// Cloud is the dev cloud broker the agent connects to.
	Cloud *devcloud.Cloud
	// Vehicle is the simulated vehicle on the agent's bus.
	Vehicle *sim.Vehicle
	// Stream records every record seen on the telemetry and events topics.
	Stream *Stream

	mu        sync.Mutex
	frames    []Frame    // guarded by mu
	responses []Response // guarded by mu
	agents    []*Agent   // guarded by mu

	bmu      sync.Mutex // not mu: the broker calls observers that take mu
	brokerUp bool       // guarded by bmu

	busMu     sync.Mutex
	bus       *canbus.Virtual    // guarded by busMu
	busSock   string             // guarded by busMu
	busCancel context.CancelFunc // guarded by busMu; nil while the bus is cut
	busWG     *sync.WaitGroup    // guarded by busMu
}

// Start brings up the vehicle, the bus, the broker and the observers and
// writes the agent's config. Everything stops when the test ends.
func Start(t testing.TB, opts Options) *System {
	t.Helper()
	if opts.Binary == "" {
		t.Fatal("agenttest: Options.Binary is required (see Build)")
	}
	if opts.Thing == "" {
		opts.Thing = "agenttest-car-001"
	}
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	db, _, err := dbc.Load(filepath.Join(root, "configs", "vehicle.dbc"))
	if err != nil {
		t.Fatal(err)
	}
	// Unix socket paths are limited to 108 bytes: keep the dir short.
	dir, err := os.MkdirTemp("", "agt")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &System{t: t, opts: opts, dir: dir, db: db, ctx: ctx, Stream: newStream(opts.Thing),
		ctlPath: filepath.Join(dir, "ctl.sock")}
	var wg sync.WaitGroup
	t.Cleanup(func() { // runs last: after every agent is reaped
		cancel()
		wg.Wait()
		if t.Failed() || os.Getenv(LogsEnv) != "" {
			s.dumpLogs()
		}
		_ = os.RemoveAll(dir)
	})
	busSock := s.startVehicle(ctx, &wg)
	s.startCloud(ctx)
	s.cfgPath, err = writeConfig(root, dir, opts, paths{
		dir: dir, stateDir: filepath.Join(dir, "state"), busSock: busSock, ctlSock: s.ctlPath, broker: cmp.Or(opts.Broker, s.Cloud.Addr()),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startVehicle serves a virtual bus on a unix socket with the simulated
// vehicle and the bus observer on it; it returns the socket path. The
// goroutines stop when ctx is cancelled.
func (s *System) startVehicle(ctx context.Context, wg *sync.WaitGroup) string {
	bus := canbus.NewVirtual()
	sock := filepath.Join(s.dir, "vbus.sock")
	s.bus, s.busSock, s.busWG = bus, sock, wg
	if err := s.serveBus(ctx); err != nil {
		s.t.Fatal(err)
	}
	var err error
	s.Vehicle, err = sim.New(sim.Options{Bus: bus.Attach(), DB: s.db, Scenario: s.opts.Scenario,
		BodyDelay: s.opts.BodyDelay, Logger: discard()})
	if err != nil {
		s.t.Fatal(err)
	}
	wg.Go(func() { _ = s.Vehicle.Run(ctx) })
	obs := bus.Attach()
	wg.Go(func() { s.watchBus(ctx, obs) })
	return sock
}

// serveBus serves the virtual bus on its socket until ctx ends or CutBus.
func (s *System) serveBus(ctx context.Context) error {
	s.busMu.Lock()
	defer s.busMu.Unlock()
	_ = os.Remove(s.busSock)
	ln, err := net.Listen("unix", s.busSock)
	if err != nil {
		return err
	}
	if err := os.Chmod(s.busSock, 0o666); err != nil { // agents run as another user too
		_ = ln.Close()
		return err
	}
	bctx, cancel := context.WithCancel(ctx)
	s.busCancel = cancel
	s.busWG.Go(func() { _ = canbus.Serve(bctx, ln, s.bus) })
	return nil
}

// CutBus makes the agent's CAN device go away: the bus socket closes with
// every connection on it. RestoreBus brings it back.
func (s *System) CutBus() {
	s.busMu.Lock()
	defer s.busMu.Unlock()
	if s.busCancel != nil {
		s.busCancel()
		s.busCancel = nil
	}
}

// RestoreBus serves the bus again after CutBus.
func (s *System) RestoreBus() {
	s.t.Helper()
	s.busMu.Lock()
	cut := s.busCancel == nil
	s.busMu.Unlock()
	if cut {
		if err := s.serveBus(s.ctx); err != nil {
			s.t.Fatalf("restore bus: %v", err)
		}
	}
}

// startCloud starts the broker (fixing its address), subscribes the
// observers and stops it again if the broker is to start down.
func (s *System) startCloud(ctx context.Context) {
	var err error
	s.Cloud, err = devcloud.New(devcloud.Options{Addr: "127.0.0.1:0", Logger: discard()})
	if err != nil {
		s.t.Fatal(err)
	}
	if err := s.Cloud.Start(ctx); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = s.Cloud.Close() })
	thing := s.opts.Thing
	s.Cloud.Subscribe("dt/tcu/"+thing+"/telemetry", func(topic string, p []byte) { s.Stream.collect(s.t, topic, p) })
	s.Cloud.Subscribe("dt/tcu/"+thing+"/events", func(topic string, p []byte) { s.Stream.collect(s.t, topic, p) })
	s.Cloud.Subscribe(devcloud.ResponseTopic(thing, "+"), s.collectResponse)
	s.brokerUp = true
	if s.opts.BrokerDown {
		s.StopBroker()
	}
}

// StartBroker starts the broker on its address after StopBroker or
// Options.BrokerDown; it does nothing if the broker runs.
func (s *System) StartBroker() {
	s.t.Helper()
	s.bmu.Lock()
	defer s.bmu.Unlock()
	if s.brokerUp {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	if err := s.Cloud.Start(ctx); err != nil {
		s.t.Fatalf("start broker: %v", err)
	}
	s.brokerUp = true
}

// StopBroker closes the broker's listener and every connection.
func (s *System) StopBroker() {
	s.bmu.Lock()
	defer s.bmu.Unlock()
	s.Cloud.Stop()
	s.brokerUp = false
}

// Thing is the agent's thing name.
func (s *System) Thing() string { return s.opts.Thing }

// ConfigPath is the agent's config file.
func (s *System) ConfigPath() string { return s.cfgPath }

// StateDir is the agent's state directory.
func (s *System) StateDir() string { return filepath.Join(s.dir, "state") }

// Dir is the test's scratch directory (config, state, sockets, logs).
func (s *System) Dir() string { return s.dir }

// Status queries the running agent's control socket.
func (s *System) Status(ctx context.Context) (ctl.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return ctl.Query(ctx, s.ctlPath)
}

// Queued returns the number of records in the agent's buffer (all
// classes), from its control socket.
func (s *System) Queued(ctx context.Context) (int64, error) {
	st, err := s.Status(ctx)
	if err != nil {
		return 0, err
	}
	return QueuedIn(st), nil
}

// QueuedIn sums the records of every queue in st.
func QueuedIn(st ctl.Status) int64 {
	var n int64
	for _, q := range st.Queues {
		n += q.Records
	}
	return n
}

// MuteVehicle silences (on) or restores every cyclic message of the
// vehicle, so that the agent stops (or resumes) producing records.
func (s *System) MuteVehicle(on bool) {
	k := s.Vehicle.Knobs()
	k.Mute = nil
	if on {
		for _, m := range s.db.Messages {
			if m.Name != "BODY_COMMAND" {
				k.Mute = append(k.Mute, m.Name)
			}
		}
	}
	s.Vehicle.SetKnobs(k)
}

// WaitFor polls cond until it holds, failing the test after timeout or
// as soon as the newest agent exits on its own.
func (s *System) WaitFor(what string, timeout time.Duration, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if a := s.newest(); a != nil {
			if err := a.unexpectedExit(); err != nil {
				s.t.Fatalf("waiting for %s: %v", what, err)
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// WaitQueueEmpty polls the agent's control socket until its buffer holds
// no record and returns how long that took.
func (s *System) WaitQueueEmpty(timeout time.Duration) time.Duration {
	s.t.Helper()
	start := time.Now()
	s.WaitFor("the agent's queue to be empty", timeout, func() bool {
		n, err := s.Queued(s.ctx)
		return err == nil && n == 0
	})
	return time.Since(start)
}

func (s *System) newest() *Agent {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.agents) == 0 {
		return nil
	}
	return s.agents[len(s.agents)-1]
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// dumpLogs writes the tail of every agent run's stderr to the test log.
func (s *System) dumpLogs() {
	const tail = 16 << 10
	s.mu.Lock()
	agents := append([]*Agent(nil), s.agents...)
	s.mu.Unlock()
	for _, a := range agents {
		b, err := os.ReadFile(a.logPath)
		if err != nil {
			s.t.Logf("agent run %d: read stderr: %v", a.Run, err)
			continue
		}
		cut := ""
		if len(b) > tail {
			b, cut = b[len(b)-tail:], fmt.Sprintf(" (last %d bytes)", tail)
		}
		s.t.Logf("agent run %d stderr%s:\n%s", a.Run, cut, b)
	}
}
