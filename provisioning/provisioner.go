package provisioning

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tcu-agent/tcu-agent/internal/backoff"
	"github.com/tcu-agent/tcu-agent/internal/fsutil"
)

// Options configure a Provisioner.
type Options struct {
	Config   Config
	StateDir string // e.g. /var/lib/tcu-agent; identity files go in StateDir/identity
	// Dial opens MQTT sessions (claim session, renewal test connect).
	Dial Dialer
	// HTTPClient is the base client for EST; its *http.Transport (if any)
	// is cloned and given the TLS client certificate. Nil means a default
	// transport.
	HTTPClient *http.Client
	Logger     *slog.Logger
	// Progress, if set, is called with each step name as it starts
	// (tcu-agent provision prints them).
	Progress func(step string)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// DeviceParams adds RegisterThing parameters known at run time, e.g.
	// {"Vin": "..."} once the vehicle reports it. It is called before
	// every RegisterThing (first boot and renewal); empty values are
	// left out, and its keys override Config.Parameters. May be nil.
	DeviceParams func() map[string]string
	// EventTopicPrefix is the topic prefix of certificate events
	// (<prefix>/<thing>/certificate/rotated); empty means "dt/tcu".
	EventTopicPrefix string
}

// Progress step names.
const (
	ProgressGenerateKey = "generate_key"
	ProgressConnect     = "connect_claim"
	ProgressCreate      = "create_certificate"
	ProgressRegister    = "register_thing"
	ProgressEnroll      = "est_enroll"
	ProgressPersist     = "persist_identity"
	ProgressTestConnect = "test_connect"
	ProgressDone        = "done"
)

// tokenLifetime is how long an ownership token is reused: AWS expires it
// after one hour; keep a margin.
const tokenLifetime = 55 * time.Minute

// Provisioner obtains and renews the device identity. Its methods are
// safe for concurrent use; they run one at a time.
type Provisioner struct {
	cfg    Config
	dir    string // StateDir/identity
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	mu     sync.Mutex // serialises Ensure and Renew
	random *rand.Rand
	// connects is when each client ID last dialled (guarded by mu):
	// CONNECTs of one client ID stay over a second apart (AWS: 1/s).
	connects map[string]time.Time
}

// connectSpacing keeps CONNECTs of one client ID apart as the broker
// sees them (AWS IoT allows one per second per client ID).
const connectSpacing = 1100 * time.Millisecond

// New checks opts; it does no I/O.
func New(opts Options) (*Provisioner, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if opts.StateDir == "" {
		return nil, errors.New("provisioning: empty state directory")
	}
	if opts.Dial == nil && opts.Config.Method != MethodStatic {
		return nil, errors.New("provisioning: nil dialer")
	}
	p := &Provisioner{
		cfg:    opts.Config,
		dir:    filepath.Join(opts.StateDir, identityDir),
		opts:   opts,
		log:    opts.Logger,
		now:    opts.Now,
		random: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0)), //nolint:gosec // jitter only

		connects: make(map[string]time.Time),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p, nil
}

func (p *Provisioner) progress(step string) {
	p.log.Debug("provisioning step", "step", step)
	if p.opts.Progress != nil {
		p.opts.Progress(step)
	}
}

// permanentError ends Ensure's retry loop.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Ensure returns the persisted identity, or provisions one. It retries
// transport failures (DNS, TCP, TLS, timeouts, dropped sessions, 429 and
// 5xx answers) itself with jittered exponential backoff between
// Config.RetryMin and Config.RetryMax until ctx ends. It returns at once,
// without sleeping, with
//   - an error wrapping ErrNoClaim when the claim certificate or key is
//     missing or unreadable (the caller re-checks later);
//   - a *HoldError while on hold: after Config.MaxRejections consecutive
//     authenticated refusals (Err wraps the *RejectedError; held for
//     Config.RejectHold, across restarts) or when the loop breaker
//     tripped (Err wraps ErrTooManyCertificates).
//
// Before it returns an identity it waits until the last connection with
// the thing name as client ID is over a second old, so the caller's
// session does not exceed the broker's connect rate.
func (p *Provisioner) Ensure(ctx context.Context) (*Identity, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id, err := Load(p.opts.StateDir)
	switch {
	case err == nil:
		p.tidy()
		return id, nil
	case !errors.Is(err, ErrNoIdentity):
		if err := p.retire(err); err != nil {
			return nil, fmt.Errorf("provision: %w", err)
		}
	}
	if p.cfg.Method == MethodStatic {
		return p.static()
	}
	if err := ensureDir(p.dir); err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	wait := time.Duration(p.cfg.RetryMin)
	var lastErr error // of the previous attempt
	for attempt := 1; ; attempt++ {
		id, err := p.attempt(ctx)
		if err == nil {
			p.log.Debug("provisioned", "thing", id.Thing, "source", id.Source, "not_after", id.NotAfter) // the caller logs the lifecycle event
			if err := p.pace(ctx, id.Thing); err != nil {
				return nil, fmt.Errorf("provision: %w", err)
			}
			p.progress(ProgressDone)
			return id, nil
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return nil, fmt.Errorf("provision: %w", perm.err)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("provision: %w", errors.Join(ctx.Err(), lastErr, err))
		}
		lastErr = err
		jittered := wait/2 + time.Duration(p.random.Int64N(int64(wait)))
		p.log.Warn("provisioning attempt failed", "attempt", attempt, "retry_in", jittered, "err", err)
		if serr := sleep(ctx, jittered); serr != nil {
			return nil, fmt.Errorf("provision: %w", errors.Join(serr, err))
		}
		wait = min(2*wait, time.Duration(p.cfg.RetryMax))
	}
}

// ResetHold lifts a rejection hold and forgets the counted refusals (the
// agent calls it on SIGHUP, after the operator fixed the claim or the
// template). The loop breaker's history is kept.
func (p *Provisioner) ResetHold() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := readState(p.dir)
	if err != nil {
		return err
	}
	if st.HoldUntil.IsZero() && st.Rejections == 0 {
		return nil
	}
	st.HoldUntil, st.Rejections, st.LastRejected = time.Time{}, 0, nil
	if err := ensureDir(p.dir); err != nil {
		return err
	}
	return st.save(p.dir)
}

// pace waits until clientID's last connect is connectSpacing old.
func (p *Provisioner) pace(ctx context.Context, clientID string) error {
	last, ok := p.connects[clientID]
	if !ok {
		return nil
	}
	if d := connectSpacing - time.Since(last); d > 0 {
		return sleep(ctx, d)
	}
	return nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	return backoff.Sleep(ctx, d)
}

// attempt runs the state machine once from the persisted step.
func (p *Provisioner) attempt(ctx context.Context) (*Identity, error) {
	st, err := readState(p.dir)
	if err != nil {
		return nil, err
	}
	if err := p.cleanOrphans(st); err != nil {
		return nil, err
	}
	if staleTLSHold(st) {
		// Written by an older version that counted a broker certificate
		// it could not verify as a refusal: not a rejection, lift it.
		p.log.Info("lifting a hold caused by a TLS verification failure")
		st.HoldUntil, st.Rejections, st.LastRejected = time.Time{}, 0, nil
	}
	if now := p.now(); now.Before(st.HoldUntil) {
		return nil, &permanentError{&HoldError{Until: st.HoldUntil, Rejections: st.Rejections, Err: st.LastRejected}}
	} else if !st.HoldUntil.IsZero() {
		st.HoldUntil, st.Rejections = time.Time{}, 0
	}
	var id *Identity
	switch p.cfg.Method {
	case MethodEST:
		id, err = p.attemptEST(ctx, st)
	default:
		id, err = p.attemptFleet(ctx, st)
	}
	if err != nil {
		return nil, p.classify(st, err)
	}
	return id, nil
}

// classify counts non-transient rejections in the persisted state and
// turns the last allowed one into a permanent error.
func (p *Provisioner) classify(st *state, err error) error {
	var rej *RejectedError
	if !errors.As(err, &rej) || rej.Transient() {
		return err
	}
	st.Rejections++
	st.LastRejected = rej
	p.log.Warn("provisioning rejected", "op", rej.Op, "status_code", rej.StatusCode,
		"error_code", rej.ErrorCode, "error_message", rej.ErrorMessage, "rejections", st.Rejections)
	if st.Rejections >= p.cfg.MaxRejections {
		st.HoldUntil = p.now().Add(time.Duration(p.cfg.RejectHold))
		p.log.Error("provisioning on hold", "until", st.HoldUntil, "rejections", st.Rejections)
		err = &permanentError{&HoldError{Until: st.HoldUntil, Rejections: st.Rejections, Err: err}}
	}
	if serr := st.save(p.dir); serr != nil {
		return errors.Join(err, serr)
	}
	return err
}

// checkLoopBreaker records a create request, or refuses it when too many
// were made within the window.
func (p *Provisioner) checkLoopBreaker(st *state) error {
	now := p.now()
	window := time.Duration(p.cfg.LoopWindow)
	if n := st.recentCreates(now, window); n >= p.cfg.MaxCertificates {
		next := st.Creates[0].Add(window)
		return &permanentError{&HoldError{Until: next, Err: fmt.Errorf("%w: %d in %s",
			ErrTooManyCertificates, n, window)}}
	}
	st.Creates = append(st.Creates, now)
	return st.save(p.dir) // durable before the request goes out
}

// retire moves an unusable identity record aside (identity.json.broken)
// so the device provisions again instead of failing forever.
func (p *Provisioner) retire(cause error) error {
	p.log.Error("identity unusable, provisioning again", "err", cause)
	name := filepath.Join(p.dir, identityFile)
	if err := os.Rename(name, name+".broken"); err != nil {
		return fmt.Errorf("retire identity: %w", errors.Join(cause, err))
	}
	return fsutil.SyncDir(p.dir)
}

// tidy removes leftovers of an interrupted write next to a committed
// identity; failing to is harmless.
func (p *Provisioner) tidy() {
	st, err := readState(p.dir)
	if err == nil {
		err = p.cleanOrphans(st)
	}
	if err != nil {
		p.log.Warn("clean identity directory", "err", err)
	}
}

// staleTLSHold reports a persisted hold whose refusal was a broker
// certificate this device could not verify (counted by versions before
// the transport/refusal split).
func staleTLSHold(st *state) bool {
	r := st.LastRejected
	return r != nil && r.Op == "connect" && strings.Contains(r.ErrorMessage, "broker certificate")
}

// cleanOrphans removes credential and temp files that neither the
// committed identity nor the state machine refers to (left by a power cut).
func (p *Provisioner) cleanOrphans(st *state) error {
	keep := map[string]bool{st.KeyFile: true, st.CertFile: true}
	rec, err := readIdentityRecord(p.dir)
	if err == nil {
		keep[filepath.Base(rec.CertFile)], keep[filepath.Base(rec.KeyFile)] = true, true
		if r := st.Renewal; r != nil && r.CertFile == filepath.Base(rec.CertFile) {
			// A power cut after a renewal's commit: finish it.
			st.retire(r.OldCertificate, "renewed")
			st.Renewal = nil
			if err := st.save(p.dir); err != nil {
				return err
			}
		}
	}
	if st.Renewal != nil {
		keep[st.Renewal.KeyFile], keep[st.Renewal.CertFile] = true, true
	}
	ents, err := os.ReadDir(p.dir)
	if err != nil {
		return fmt.Errorf("list %s: %w", p.dir, err)
	}
	removed := false
	for _, e := range ents {
		n := e.Name()
		orphan := strings.HasPrefix(n, ".") && strings.Contains(n, ".tmp") ||
			(strings.HasPrefix(n, "cert-") || strings.HasPrefix(n, "key-")) && !keep[n]
		if orphan {
			if err := os.Remove(filepath.Join(p.dir, n)); err != nil {
				return fmt.Errorf("remove orphan %s: %w", n, err)
			}
			removed = true
		}
	}
	if removed {
		return fsutil.SyncDir(p.dir)
	}
	return nil
}
