package command

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
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
	// Heartbeat, when set, is called by the dispatcher loop on every
	// iteration (wire it to the health tracker's Beat: a hung dispatcher
	// then withholds the watchdog).
	Heartbeat func()
	// Idle, when set, is called right before the dispatcher blocks waiting
	// for a command or a timer (the health tracker's Loop.Idle): the
	// dispatcher then needs no periodic wake-up to prove it is alive.
	Idle func()
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
	waker  waker
	ledger *ledger.Ledger
	hooks  hooks
	beat   func()
	idle   func()
	stats  counters

	wg sync.WaitGroup // running jobs and response deliveries

	// damaged is when the ledger was found damaged (zero if never):
	// commands issued before it (plus clock skew) may be among the lost
	// lines and are refused.
	damaged time.Time
	// unsent is set when a recorded final response could not be
	// delivered; the dispatcher then retries after resendEvery (backing
	// off). unsentKick wakes the dispatcher to arm that retry.
	unsent     atomic.Bool
	unsentKick chan struct{}

	// The dispatcher's maintenance (ledger pruning, re-handing results the
	// responder refused) runs on a timer armed only for when something is
	// due (nextMaintenance); an idle engine with nothing to prune sleeps.
	// A delivery that makes an entry prunable kicks the dispatcher
	// (maintKick) to re-arm it. maintainEvery is how often unanswered
	// results are retried (pruneEvery; tests shorten it before Run); loops
	// counts the dispatcher's wake-ups (tests).
	maintKick     chan struct{}
	maintainEvery time.Duration
	loops         atomic.Uint64

	inMu   sync.Mutex
	intake []delivery    // guarded by inMu; received, not yet dispatched, in arrival order
	wake   chan struct{} // signalled when intake becomes non-empty

	mu         sync.Mutex
	delivering map[string]bool // guarded by mu; ids whose final response is being delivered
	// queued counts, by id, final responses of a batch waiting for a
	// delivery slot (dispatchBatch): resend must not hand them over as
	// well, or the answer goes out twice. Guarded by mu.
	queued   map[string]int
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
	dup      bool
	ack      func() // nil: nothing to acknowledge
}

// Message is one received MQTT message as the session hands it over.
type Message struct {
	Topic   string
	Payload []byte
	// Duplicate is the MQTT DUP flag: the broker delivered this message
	// before without getting its PUBACK.
	Duplicate bool
	// Ack acknowledges the message to the broker (PUBACK); nil when there
	// is nothing to acknowledge. The engine calls it once the request is
	// durably recorded in the ledger or definitively answered.
	Ack func()
}

// maxIntake bounds the messages waiting for the dispatcher. Unacknowledged
// QoS 1 messages are limited by the broker (mosquitto: 20 in flight per
// client; AWS IoT: 100), so this is only reached by a broker that ignores
// its own window; a message beyond it is left unacknowledged (the broker
// redelivers it after the next reconnect).
const maxIntake = 4096

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
		il:         newInterlocks(opts.Config.Interlocks, opts.Signals),
		wake:       make(chan struct{}, 1),
		unsentKick: make(chan struct{}, 1),
		maintKick:  make(chan struct{}, 1), maintainEvery: pruneEvery,
		inflight: map[string]*job{}, busy: map[string]*slot{}, counters: map[string]uint64{},
		delivering: map[string]bool{}, queued: map[string]int{},
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
	e.beat, e.idle = opts.Heartbeat, opts.Idle
	if e.beat == nil {
		e.beat = func() {}
	}
	if e.idle == nil {
		e.idle = func() {}
	}
	l, err := ledger.OpenClock(filepath.Join(opts.StateDir, "commands"), e.now)
	if err != nil {
		return nil, fmt.Errorf("new command engine: %w", err)
	}
	e.ledger = l
	if n := l.Corrupt(); n > 0 {
		e.log.Error("command ledger damaged lines skipped", "lines", n)
	}
	if at := l.DamagedAt(); !at.IsZero() && e.now().Before(at.Add(e.cfg.MaxValidity.Std()+2*e.cfg.ClockSkew.Std())) {
		e.damaged = at
		e.log.Error("command ledger was damaged: refusing commands issued before the damage was found",
			"damaged_at", at.UTC().Format(time.RFC3339Nano), "until", at.Add(e.cfg.MaxValidity.Std()+2*e.cfg.ClockSkew.Std()).UTC().Format(time.RFC3339Nano))
	}
	return e, nil
}

// Topics returns the MQTT subscription filters for this thing.
func (e *Engine) Topics() []string { return e.topics.filters() }

// HandleMessage queues one received message for the dispatcher and returns
// at once; it never blocks (it runs on the MQTT client's inbound goroutine,
// which also reads the PUBACKs of our responses). Messages are dispatched
// in the order HandleMessage was called. m.Ack is called once the request
// is recorded (ledger fsynced) or answered; a message the engine could not
// take is left unacknowledged, so the broker redelivers it.
func (e *Engine) HandleMessage(m Message) {
	e.stats.received.Add(1)
	d := delivery{topic: m.Topic, size: len(m.Payload), received: e.now(), dup: m.Duplicate, ack: m.Ack}
	if len(m.Payload) <= e.cfg.MaxRequestBytes {
		d.payload = append([]byte(nil), m.Payload...)
	}
	e.inMu.Lock()
	full := len(e.intake) >= maxIntake
	if !full {
		e.intake = append(e.intake, d)
	}
	e.inMu.Unlock()
	if full {
		e.stats.dropped.Add(1)
		e.log.Error("command left unacknowledged for redelivery", "topic", clip(m.Topic), "err", "intake full")
		return
	}
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Handle is HandleMessage for a message with nothing to acknowledge.
func (e *Engine) Handle(_ context.Context, topic string, payload []byte) {
	e.HandleMessage(Message{Topic: topic, Payload: payload})
}

// takeIntake returns and clears the waiting messages.
func (e *Engine) takeIntake() []delivery {
	e.inMu.Lock()
	defer e.inMu.Unlock()
	b := e.intake
	e.intake = nil
	return b
}

// pruneEvery is how often, while a recorded result waits to be handed
// over, all unanswered results are handed to the responder again (a
// backstop to the resend retry); pruning itself runs when the first entry
// expires. resendEvery is how soon after a failed delivery it is retried
// (doubling up to maxResendTicks × resendEvery).
const (
	pruneEvery  = 30 * time.Second
	resendEvery = time.Second
	// maxResendTicks caps the resend backoff (in resendEvery units).
	maxResendTicks = 5
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
	// The maintenance timer runs only while something in the ledger will
	// become due: an idle engine with nothing to prune is never woken.
	maint := time.NewTimer(time.Hour)
	maint.Stop()
	defer maint.Stop()
	var maintC <-chan time.Time // nil: nothing due
	lastMaint := e.now()
	pruneFailed := false
	// The resend timer runs only while a result waits to be resent.
	resend := time.NewTimer(resendEvery)
	resend.Stop()
	defer resend.Stop()
	var resendC <-chan time.Time // nil: not armed
	resendWait := 0              // back off while the responder keeps failing (offline)
	for {
		maintC = nil
		if d, ok := e.nextMaintenance(lastMaint, pruneFailed); ok {
			maint.Reset(d) // Go ≥ 1.23: no stale tick from an earlier arming
			maintC = maint.C
		} else {
			maint.Stop()
		}
		// Idle while blocked in the select; every case beats first, so a
		// hang in its work (a dispatch, a prune, a resend) stops the beats.
		e.idle()
		select {
		case <-ctx.Done():
			e.woke()
			e.drain(ctx)
			e.wg.Wait()
			bg.Wait()
			return nil
		case <-e.wake:
			e.woke()
			e.dispatchBatch(ctx, e.takeIntake())
		case <-maintC:
			e.woke()
			pruneFailed = !e.maintain(ctx)
			lastMaint = e.now()
		case <-e.maintKick:
			e.woke() // a delivery made an entry prunable: re-arm
		case <-e.unsentKick:
			e.woke()
			if resendC == nil {
				resend.Reset(time.Duration(max(resendWait, 1)) * resendEvery)
				resendC = resend.C
			}
		case <-resendC:
			e.woke()
			resendC = nil
			if !e.unsent.Swap(false) {
				continue
			}
			if e.resend(ctx) {
				resendWait = 0
			} else { // resend marked unsent again: the kick arms the next try
				resendWait = min(max(2*resendWait, 1), maxResendTicks)
			}
		}
	}
}

// woke records one wake-up of the dispatcher: a heartbeat, and the count
// the idle tests read.
func (e *Engine) woke() {
	e.loops.Add(1)
	e.beat()
}

// nextMaintenance returns how long the dispatcher may sleep before its
// maintenance is due, and false when nothing in the ledger will ever
// become due by itself (then no timer runs). Due are: the first responded
// entry's expiry (pruning), and, while a recorded result is still to be
// handed over, maintainEvery after that result was recorded or after the
// last maintenance, whichever is later (the backstop resend). After a
// failed prune (the ledger is fail-stop) it waits at least maintainEvery.
func (e *Engine) nextMaintenance(last time.Time, pruneFailed bool) (time.Duration, bool) {
	at, doneSince := e.ledger.Due()
	if !doneSince.IsZero() {
		retry := doneSince
		if last.After(retry) {
			retry = last
		}
		if retry = retry.Add(e.maintainEvery); at.IsZero() || retry.Before(at) {
			at = retry
		}
	}
	if at.IsZero() {
		return 0, false
	}
	if floor := last.Add(e.maintainEvery); pruneFailed && at.Before(floor) {
		at = floor
	}
	// Nothing in the ledger expires later than max_validity + clock_skew
	// + ledger_retention from now: a longer wait means the wall clock was
	// set back, and the deadline is taken again from then.
	limit := e.cfg.MaxValidity.Std() + e.cfg.ClockSkew.Std() + e.cfg.LedgerRetention.Std() + e.maintainEvery
	return min(max(at.Sub(e.now()), 0), limit), true
}

// kickMaintenance wakes the dispatcher to re-arm its maintenance timer: an
// entry became prunable (responded). One wake-up per answered command
// (coalesced), none while nothing happens.
func (e *Engine) kickMaintenance() {
	select {
	case e.maintKick <- struct{}{}:
	default:
	}
}

// markUnsent records that a final response still has to be delivered and
// wakes the dispatcher to schedule the retry.
func (e *Engine) markUnsent() {
	e.unsent.Store(true)
	select {
	case e.unsentKick <- struct{}{}:
	default:
	}
}

// drain answers the messages still waiting in the intake queue: with ctx
// done, every one that would run is REJECTED "agent_shutdown" (recorded),
// so no received request goes unanswered. Messages handed to Handle after
// Run returned are never answered: stop the MQTT session first.
func (e *Engine) drain(ctx context.Context) {
	for {
		b := e.takeIntake()
		if len(b) == 0 {
			return
		}
		e.dispatchBatch(ctx, b)
	}
}

// Close closes the ledger of an engine whose Run was never called.
func (e *Engine) Close() error { return e.ledger.Close() }
