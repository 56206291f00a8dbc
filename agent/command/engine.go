package command

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/command/ledger"
	"github.com/tcu-agent/tcu-agent/drivers"
)

// Responder takes the engine's responses. The agent enqueues each one
// durably (highest buffer class) for publication on resp.Topic with body
// resp.Payload(), and records a command_result event for final ones.
type Responder interface {
	Respond(ctx context.Context, resp Response) error
}

// Options are the engine's dependencies.
type Options struct {
	// Config is the [commands] section; it must pass Validate.
	Config Config
	// Thing is this device's thing name.
	Thing string
	// StateDir is the agent's state directory; the ledger lives in
	// StateDir/commands.
	StateDir string
	// ConfigDir resolves relative public key paths.
	ConfigDir string
	// Signals are the live decoded signals (interlocks, feedback).
	Signals Signals
	// Transmitter returns the transmitter of a bus (CAN driver instance).
	Transmitter func(bus string) (drivers.Transmitter, bool)
	// Responder takes every response.
	Responder Responder
	// Now is the wall clock (default time.Now).
	Now func() time.Time
	// ClockTrusted reports whether the wall clock has been synchronised
	// since boot. Required when Config.RequireTrustedClock is set.
	ClockTrusted func() bool
	// Logger receives the audit trail (default: discard).
	Logger *slog.Logger
	// Heartbeat, when set, is called by the dispatcher loop every few
	// seconds, also while idle (wire it to the health tracker's Beat: a
	// hung dispatcher then withholds the watchdog).
	Heartbeat func()
}

// Engine receives, checks, executes and answers remote commands.
type Engine struct {
	cfg    Config
	thing  string
	topics topics
	specs  map[string]*Spec
	keys   []ed25519.PublicKey
	sig    Signals
	txFor  func(string) (drivers.Transmitter, bool)
	resp   Responder
	now    func() time.Time
	clock  func() bool
	log    *slog.Logger
	il     *interlocks
	ledger *ledger.Ledger
	intake chan delivery
	hooks  hooks
	beat   func()
	stats  counters

	wg sync.WaitGroup // running jobs

	mu       sync.Mutex
	inflight map[string]*job   // guarded by mu; admitted and not yet answered, by id
	busy     map[string]*slot  // guarded by mu; actuator → running job and queue
	counters map[string]uint64 // guarded by mu; bus/message/counter → last value
	seed     uint64            // first counter value base, from the start time
}

// hooks are test seams; nil in production.
type hooks struct {
	// afterBegin runs after the ledger entry is durable and before the
	// first frame.
	afterBegin func(id string)
	// afterFinish runs after the final result is durable and before it is
	// handed to the responder.
	afterFinish func(id string)
}

// delivery is one received MQTT message.
type delivery struct {
	topic    string
	payload  []byte
	size     int
	received time.Time
}

// intakeSize bounds the messages waiting for the dispatcher.
const intakeSize = 256

// ErrConfig classifies configuration errors from New.
var ErrConfig = errors.New("invalid command configuration")

// New checks opts, loads the public keys and opens the ledger.
func New(opts Options) (*Engine, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	switch {
	case !deviceRE.MatchString(opts.Thing):
		return nil, fmt.Errorf("%w: thing name %q", ErrConfig, opts.Thing)
	case opts.StateDir == "":
		return nil, fmt.Errorf("%w: no state directory", ErrConfig)
	case opts.Signals == nil || opts.Transmitter == nil || opts.Responder == nil:
		return nil, fmt.Errorf("%w: signals, transmitter and responder are required", ErrConfig)
	case opts.Config.RequireTrustedClock && opts.ClockTrusted == nil:
		return nil, fmt.Errorf("%w: require_trusted_clock is set but no clock source is wired", ErrConfig)
	}
	keys, err := loadKeys(opts.Config.PublicKeys, opts.ConfigDir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	e := &Engine{
		cfg: opts.Config, thing: opts.Thing, topics: topics{thing: opts.Thing},
		specs: map[string]*Spec{}, keys: keys, sig: opts.Signals, txFor: opts.Transmitter,
		resp: opts.Responder, now: opts.Now, clock: opts.ClockTrusted, log: opts.Logger,
		il:       newInterlocks(opts.Config.Interlocks, opts.Signals),
		intake:   make(chan delivery, intakeSize),
		inflight: map[string]*job{}, busy: map[string]*slot{}, counters: map[string]uint64{},
	}
	for i := range e.cfg.Commands {
		e.specs[e.cfg.Commands[i].Name] = &e.cfg.Commands[i]
	}
	if e.now == nil {
		e.now = time.Now
	}
	// Counters start where the last run is unlikely to have stopped, so an
	// ECU that drops a repeated counter value does not drop our first
	// command after a restart.
	e.seed = uint64(e.now().UnixMilli())
	if e.clock == nil {
		e.clock = func() bool { return true }
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.beat = opts.Heartbeat
	if e.beat == nil {
		e.beat = func() {}
	}
	l, err := ledger.Open(filepath.Join(opts.StateDir, "commands"))
	if err != nil {
		return nil, fmt.Errorf("new command engine: %w", err)
	}
	e.ledger = l
	if n := l.Corrupt(); n > 0 {
		e.log.Error("command ledger damaged lines skipped", "lines", n)
	}
	return e, nil
}

// Topics returns the MQTT subscription filters for this thing.
func (e *Engine) Topics() []string { return e.topics.filters() }

// handleWait bounds how long Handle waits for room in the intake queue.
const handleWait = time.Second

// Handle queues one received message for the dispatcher. It copies payload
// and returns at once unless the intake queue is full (then it waits up to
// a second and drops the message with an error log).
func (e *Engine) Handle(ctx context.Context, topic string, payload []byte) {
	e.stats.received.Add(1)
	d := delivery{topic: topic, size: len(payload), received: e.now()}
	if len(payload) <= e.cfg.MaxRequestBytes {
		d.payload = append([]byte(nil), payload...)
	}
	select {
	case e.intake <- d:
		return
	default:
	}
	t := time.NewTimer(handleWait)
	defer t.Stop()
	select {
	case e.intake <- d:
	case <-ctx.Done():
		e.stats.dropped.Add(1)
		e.log.Error("command dropped", "topic", topic, "err", ctx.Err())
	case <-t.C:
		e.stats.dropped.Add(1)
		e.log.Error("command dropped", "topic", topic, "err", "intake queue full")
	}
}

// pruneEvery is how often the ledger is pruned and unanswered results are
// handed to the responder again; beatEvery how often the dispatcher beats.
const (
	pruneEvery = 30 * time.Second
	beatEvery  = 5 * time.Second
)

// Run answers commands interrupted by a previous crash, then dispatches
// received commands until ctx is done. Jobs still running then finish with
// FAILED/REJECTED "agent_shutdown" before Run returns; the ledger is closed.
func (e *Engine) Run(ctx context.Context) error {
	defer func() { _ = e.ledger.Close() }()
	e.reconcile(ctx)

	var bg sync.WaitGroup
	bg.Add(1)
	go func() { // interlock hold tracking; stops with ctx
		defer bg.Done()
		e.il.track(ctx)
	}()
	tick := time.NewTicker(pruneEvery)
	defer tick.Stop()
	beat := time.NewTicker(beatEvery)
	defer beat.Stop()
	for {
		e.beat()
		select {
		case <-ctx.Done():
			e.drain(ctx)
			e.wg.Wait()
			bg.Wait()
			return nil
		case d := <-e.intake:
			e.dispatch(ctx, d)
		case <-tick.C:
			e.maintain(ctx)
		case <-beat.C:
		}
	}
}

// drain answers the messages still waiting in the intake queue: with ctx
// done, every one that would run is REJECTED "agent_shutdown" (recorded),
// so no received request goes unanswered. Messages handed to Handle after
// Run returned are never answered: stop the MQTT session first.
func (e *Engine) drain(ctx context.Context) {
	for {
		select {
		case d := <-e.intake:
			e.dispatch(ctx, d)
		default:
			return
		}
	}
}

// Close closes the ledger of an engine whose Run was never called.
func (e *Engine) Close() error { return e.ledger.Close() }
