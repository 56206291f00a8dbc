// Package jobs is the device side of the AWS IoT Jobs MQTT API
// (docs/aws-iot-reference.md §4) and the runner that applies signed
// configuration bundles delivered through it (docs/operations.md, "Remote configuration (Jobs)").
//
// The Client speaks the protocol: it learns of pending work from
// notify-next and from `$next/get` at start and after every reconnect,
// moves one execution at a time to IN_PROGRESS with start-next, hands it
// to a Handler and sends the handler's updates with expectedVersion. It
// publishes through a Publisher (the agent's MQTT session) and receives
// through HandleMessage, which the session's message handler calls for
// the topics Topics returns: the session subscribes them on every
// (re)connect, so no route is lost when the connection is.
package jobs

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tcu-agent/tcu-agent/internal/backoff"
)

// Statuses of a job execution (aws-iot-reference.md §4.5).
const (
	StatusQueued     = "QUEUED"
	StatusInProgress = "IN_PROGRESS"
	StatusSucceeded  = "SUCCEEDED"
	StatusFailed     = "FAILED"
	StatusRejected   = "REJECTED"
	StatusTimedOut   = "TIMED_OUT"
	StatusRemoved    = "REMOVED"
	StatusCanceled   = "CANCELED"
)

// Terminal reports whether status is final.
func Terminal(status string) bool {
	switch status {
	case StatusSucceeded, StatusFailed, StatusRejected, StatusTimedOut, StatusRemoved, StatusCanceled:
		return true
	}
	return false
}

// Error codes of a /rejected response.
const (
	CodeInvalidTopic           = "InvalidTopic"
	CodeInvalidJSON            = "InvalidJson"
	CodeInvalidRequest         = "InvalidRequest"
	CodeInvalidStateTransition = "InvalidStateTransition"
	CodeResourceNotFound       = "ResourceNotFound"
	CodeVersionMismatch        = "VersionMismatch"
	CodeInternalError          = "InternalError"
	CodeRequestThrottled       = "RequestThrottled"
	CodeTerminalStateReached   = "TerminalStateReached"
)

// Execution is a JobExecution as the service sends it.
type Execution struct {
	JobID           string            `json:"jobId"`
	ThingName       string            `json:"thingName,omitempty"`
	JobDocument     json.RawMessage   `json:"jobDocument,omitempty"`
	Status          string            `json:"status"`
	StatusDetails   map[string]string `json:"statusDetails,omitempty"`
	QueuedAt        int64             `json:"queuedAt,omitempty"`
	StartedAt       int64             `json:"startedAt,omitempty"`
	LastUpdatedAt   int64             `json:"lastUpdatedAt,omitempty"`
	VersionNumber   int64             `json:"versionNumber"`
	ExecutionNumber int64             `json:"executionNumber,omitempty"`
}

// ExecutionState is a JobExecutionState.
type ExecutionState struct {
	Status        string            `json:"status"`
	StatusDetails map[string]string `json:"statusDetails,omitempty"`
	VersionNumber int64             `json:"versionNumber"`
}

// RejectedError is a /rejected response.
type RejectedError struct {
	Code    string          `json:"code"`
	Message string          `json:"message"`
	State   *ExecutionState `json:"executionState,omitempty"`
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("jobs request rejected: %s: %s", e.Code, e.Message)
}

// retryable reports whether a rejection is worth retrying as is.
func (e *RejectedError) retryable() bool {
	return e.Code == CodeRequestThrottled || e.Code == CodeInternalError
}

// ErrGone means the execution can no longer be updated: it was cancelled,
// deleted, timed out or is otherwise in a terminal state.
var ErrGone = errors.New("job execution is gone (cancelled, deleted or terminal)")

// ErrTimeout means no response arrived in time.
var ErrTimeout = errors.New("no response from the jobs service")

// Publisher sends a QoS 1 message; the agent's *uplink.Session is one.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

// Handler runs one job execution. It reports progress and the final
// status through j.Update; when it returns without a terminal update the
// execution stays IN_PROGRESS (e.g. the process restarts to prove a new
// configuration, and the next start continues the same execution).
type Handler interface {
	Run(ctx context.Context, j *Job)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, j *Job)

// Run calls f.
func (f HandlerFunc) Run(ctx context.Context, j *Job) { f(ctx, j) }

// Options configure a Client.
type Options struct {
	Thing     string
	Publisher Publisher
	Handler   Handler
	// Connects returns the session's count of successful connects; a
	// change makes the client ask for pending work again (work queued
	// while offline produces no notification). It is read at start, on
	// every Client.Connected call and, if Resync > 0, every Resync. Nil:
	// re-asks only on Client.Connected.
	Connects func() uint64
	// Resync is how often Connects is polled; 0 (the default): never,
	// the session calls Client.Connected on every connect instead, so an
	// idle client has no timer.
	Resync time.Duration
	// RequestTimeout bounds the wait for accepted/rejected (default 10 s,
	// as the AWS IoT Device Client).
	RequestTimeout time.Duration
	// MaxBackoff caps the retry interval after a timeout, RequestThrottled
	// or InternalError (default 640 s, as the Device Client; first 1 s).
	MaxBackoff time.Duration
	// StepTimeout is sent as stepTimeoutInMinutes with start-next and
	// IN_PROGRESS updates (0: not sent).
	StepTimeout time.Duration
	Logger      *slog.Logger
}

// Client runs the Jobs protocol for one thing. Create it with New, wire
// HandleMessage into the session's handler for Topics, then Run it.
type Client struct {
	opts   Options
	prefix string // $aws/things/<thing>/jobs/
	log    *slog.Logger

	kick      chan struct{} // a notify-next with an execution arrived
	connected chan struct{} // the session (re)connected (Connected)

	mu      sync.Mutex
	pending map[string]chan response // guarded by mu; by clientToken
	current string                   // guarded by mu; job being run
	parked  string                   // guarded by mu; job its handler left IN_PROGRESS
}

type response struct {
	accepted bool
	payload  []byte
}

// New returns a Client.
func New(opts Options) (*Client, error) {
	if opts.Thing == "" || opts.Publisher == nil || opts.Handler == nil {
		return nil, errors.New("jobs: Thing, Publisher and Handler are required")
	}
	if strings.ContainsAny(opts.Thing, "/+#") {
		return nil, fmt.Errorf("jobs: bad thing name %q", opts.Thing)
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 10 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 640 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Client{opts: opts, prefix: "$aws/things/" + opts.Thing + "/jobs/", log: opts.Logger,
		kick: make(chan struct{}, 1), connected: make(chan struct{}, 1), pending: map[string]chan response{}}, nil
}

// Connected tells the client that the session has (re)connected with its
// subscriptions in place: it asks for pending work again. It never
// blocks; call it from the session's connect hook.
func (c *Client) Connected() {
	select {
	case c.connected <- struct{}{}:
	default:
	}
}

// Topics are the filters the session must subscribe for the client.
func (c *Client) Topics() []string {
	return []string{
		c.prefix + "notify-next",
		c.prefix + "start-next/+",
		c.prefix + "+/get/+",
		c.prefix + "+/update/+",
	}
}

// Owns reports whether topic is one of the client's.
func (c *Client) Owns(topic string) bool { return strings.HasPrefix(topic, c.prefix) }

// HandleMessage takes one inbound message on a topic Owns; it never
// blocks. Messages for another thing, duplicates and replies nobody waits
// for are dropped.
func (c *Client) HandleMessage(topic string, payload []byte) {
	rest, ok := strings.CutPrefix(topic, c.prefix)
	if !ok {
		return // not ours (another thing's topic): never act on it
	}
	if rest == "notify-next" {
		var n struct {
			Execution *Execution `json:"execution"`
		}
		if err := json.Unmarshal(payload, &n); err != nil {
			c.log.Warn("jobs: bad notify-next", "err", err)
			return
		}
		if n.Execution == nil || n.Execution.JobID == "" {
			return // the queue is empty
		}
		c.mu.Lock()
		same := n.Execution.JobID == c.current
		c.mu.Unlock()
		if same {
			return // a duplicate of the job being run
		}
		select {
		case c.kick <- struct{}{}:
		default:
		}
		return
	}
	var accepted bool
	switch {
	case strings.HasSuffix(rest, "/accepted"):
		accepted = true
	case strings.HasSuffix(rest, "/rejected"):
	default:
		return
	}
	var t struct {
		ClientToken string `json:"clientToken"`
	}
	if json.Unmarshal(payload, &t) != nil || t.ClientToken == "" {
		return
	}
	c.mu.Lock()
	ch := c.pending[t.ClientToken]
	delete(c.pending, t.ClientToken)
	c.mu.Unlock()
	if ch != nil {
		ch <- response{accepted: accepted, payload: payload} // buffered 1, one sender
	}
}

// Run asks for pending work at start, after every reconnect and on
// notify-next, and runs one execution at a time until ctx ends.
func (c *Client) Run(ctx context.Context) error {
	var seen uint64
	if c.opts.Connects != nil {
		seen = c.opts.Connects()
	}
	var resync <-chan time.Time // nil: event-driven (Connected)
	if c.opts.Resync > 0 {
		tick := time.NewTicker(c.opts.Resync)
		defer tick.Stop()
		resync = tick.C
	}
	// $next/get at start, or at the first connect if not connected yet.
	check := c.opts.Connects == nil || seen > 0
	for {
		if check {
			check = false
			if err := c.drain(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				c.log.Warn("jobs: cannot fetch pending jobs; retrying at the next notification or reconnect", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.kick:
			check = true
		case <-c.connected:
			if c.opts.Connects != nil {
				seen = c.opts.Connects()
			}
			check = true
		case <-resync:
			if c.opts.Connects != nil {
				if n := c.opts.Connects(); n != seen {
					seen, check = n, true
				}
			}
		}
	}
}

// drain runs pending executions until none is left.
func (c *Client) drain(ctx context.Context) error {
	for {
		next, err := c.describe(ctx, "$next")
		if err != nil {
			return err
		}
		if next == nil {
			return nil
		}
		c.mu.Lock()
		parked := next.JobID == c.parked
		c.mu.Unlock()
		if parked {
			// Left IN_PROGRESS by its handler in this process (it
			// continues after a restart): nothing else may run before it.
			return nil
		}
		ex, err := c.startNext(ctx)
		if err != nil {
			return err
		}
		if ex == nil {
			return nil
		}
		c.run(ctx, ex)
		if ctx.Err() != nil {
			return nil
		}
	}
}

func (c *Client) run(ctx context.Context, ex *Execution) {
	c.mu.Lock()
	c.current = ex.JobID
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.current = ""
		c.mu.Unlock()
	}()
	j := &Job{c: c, Execution: *ex}
	c.log.Info("jobs: running", "job_id", ex.JobID, "status", ex.Status, "version", ex.VersionNumber)
	c.opts.Handler.Run(ctx, j)
	if !Terminal(j.Status) {
		c.mu.Lock()
		c.parked = ex.JobID
		c.mu.Unlock()
	}
}

// describe returns the execution jobID names ("$next" allowed), or nil if
// there is none.
func (c *Client) describe(ctx context.Context, jobID string) (*Execution, error) {
	var out struct {
		Execution *Execution `json:"execution"`
	}
	err := c.call(ctx, jobID+"/get", map[string]any{"includeJobDocument": true}, &out)
	var rej *RejectedError
	if errors.As(err, &rej) && (rej.Code == CodeResourceNotFound || rej.Code == CodeTerminalStateReached) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("describe %s: %w", jobID, err)
	}
	return out.Execution, nil
}

// startNext moves the next pending execution to IN_PROGRESS.
func (c *Client) startNext(ctx context.Context) (*Execution, error) {
	req := map[string]any{}
	if m := c.stepMinutes(); m > 0 {
		req["stepTimeoutInMinutes"] = m
	}
	var out struct {
		Execution *Execution `json:"execution"`
	}
	if err := c.call(ctx, "start-next", req, &out); err != nil {
		return nil, fmt.Errorf("start-next: %w", err)
	}
	return out.Execution, nil
}

func (c *Client) stepMinutes() int64 {
	if c.opts.StepTimeout <= 0 {
		return 0
	}
	return max(1, int64(c.opts.StepTimeout/time.Minute))
}

// call sends one request (retrying timeouts and retryable rejections
// with backoff until ctx ends) and decodes the accepted response into out.
func (c *Client) call(ctx context.Context, api string, req map[string]any, out any) error {
	bo := backoff.New(min(time.Second, c.opts.MaxBackoff), c.opts.MaxBackoff)
	for {
		payload, err := c.once(ctx, api, req)
		if err == nil {
			if out == nil {
				return nil
			}
			if err := json.Unmarshal(payload, out); err != nil {
				return fmt.Errorf("decode %s response: %w", api, err)
			}
			return nil
		}
		var rej *RejectedError
		if errors.As(err, &rej) && !rej.retryable() {
			return err
		}
		wait := bo.Next()
		c.log.Warn("jobs: request failed, retrying", "api", api, "err", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %w)", api, ctx.Err(), err)
		case <-time.After(wait):
		}
	}
}

// once sends one request with a fresh clientToken and waits for its
// response.
func (c *Client) once(ctx context.Context, api string, req map[string]any) ([]byte, error) {
	tok := token()
	body := make(map[string]any, len(req)+1)
	for k, v := range req {
		body[k] = v
	}
	body["clientToken"] = tok
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", api, err)
	}
	ch := make(chan response, 1)
	c.mu.Lock()
	c.pending[tok] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, tok)
		c.mu.Unlock()
	}()
	pctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	if err := c.opts.Publisher.Publish(pctx, c.prefix+api, b); err != nil {
		return nil, fmt.Errorf("publish %s: %w", api, err)
	}
	select {
	case r := <-ch:
		if r.accepted {
			return r.payload, nil
		}
		rej := &RejectedError{}
		if err := json.Unmarshal(r.payload, rej); err != nil || rej.Code == "" {
			return nil, fmt.Errorf("%s: undecodable rejection %q", api, r.payload)
		}
		return nil, rej
	case <-pctx.Done():
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s: %w within %v", api, ErrTimeout, c.opts.RequestTimeout)
	}
}

// token returns a random 10-character client token.
func token() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	var b [10]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}

// Job is one execution being run by a Handler.
type Job struct {
	c *Client
	Execution
}

// Update sets the execution's status and statusDetails (control
// characters such as newlines replaced by spaces — the service refuses
// values outside [^\p{C}]+ — and values cut to 1024 bytes) with
// expectedVersion. On VersionMismatch it re-reads the
// execution and retries with the current version, unless the execution
// has reached a terminal state meanwhile. It returns ErrGone when the
// execution can no longer be updated (cancelled, deleted, terminal).
func (j *Job) Update(ctx context.Context, status string, details map[string]string) error {
	clean := make(map[string]string, len(details))
	for k, v := range details {
		v = Truncate(Printable(v), 1024)
		if strings.TrimSpace(v) == "" {
			continue // the service rejects empty values
		}
		clean[k] = v
	}
	for attempt := 0; ; attempt++ {
		req := map[string]any{
			"status": status, "statusDetails": clean, "expectedVersion": j.VersionNumber,
			"includeJobExecutionState": true,
		}
		if m := j.c.stepMinutes(); m > 0 && status == StatusInProgress {
			req["stepTimeoutInMinutes"] = m
		}
		var out struct {
			State *ExecutionState `json:"executionState"`
		}
		err := j.c.call(ctx, j.JobID+"/update", req, &out)
		if err == nil {
			if out.State != nil {
				j.VersionNumber = out.State.VersionNumber
				j.Status = out.State.Status
				j.StatusDetails = out.State.StatusDetails
			} else {
				j.VersionNumber++
				j.Status, j.StatusDetails = status, clean
			}
			return nil
		}
		var rej *RejectedError
		if !errors.As(err, &rej) {
			return fmt.Errorf("update %s: %w", j.JobID, err)
		}
		switch rej.Code {
		case CodeVersionMismatch:
			if attempt >= 3 {
				return fmt.Errorf("update %s: %w", j.JobID, err)
			}
			ex, derr := j.c.describe(ctx, j.JobID)
			if derr != nil {
				return fmt.Errorf("update %s: re-read after version mismatch: %w", j.JobID, derr)
			}
			if ex == nil || Terminal(ex.Status) {
				return fmt.Errorf("update %s: %w", j.JobID, ErrGone)
			}
			j.c.log.Info("jobs: version mismatch, retrying with the current version", "job_id", j.JobID,
				"had", j.VersionNumber, "now", ex.VersionNumber)
			j.VersionNumber = ex.VersionNumber
		case CodeInvalidStateTransition, CodeResourceNotFound, CodeTerminalStateReached:
			return fmt.Errorf("update %s: %w: %w", j.JobID, ErrGone, err)
		default:
			return fmt.Errorf("update %s: %w", j.JobID, err)
		}
	}
}

// Printable replaces every control or other Unicode "C" character in s
// (newlines, tabs, invalid UTF-8, format characters) by a space, so that
// s matches the statusDetails value pattern [^\p{C}]+.
func Printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.In(r, unicode.C) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, " "))
}

// Truncate cuts s to at most n bytes on a rune boundary.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
