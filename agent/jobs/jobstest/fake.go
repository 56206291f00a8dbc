// Package jobstest is a strict in-memory AWS IoT Jobs service for tests
// of the device side: it answers the MQTT API of aws-iot-reference.md §4
// for one thing, enforces expectedVersion, keeps terminal states final,
// has at most one execution IN_PROGRESS, sends notify-next when the next
// execution changes, and has fault knobs (lost responses, throttling,
// offline, duplicate notifications, concurrent version bumps,
// cancellation).
package jobstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
)

// detailValue is the service's pattern for a statusDetails value.
var detailValue = regexp.MustCompile(`^[^\p{C}]+$`)

// ErrOffline is what Publish returns while the fake is offline.
var ErrOffline = errors.New("jobstest: not connected")

// Execution is the service's record of one job execution.
type Execution struct {
	JobID         string
	Document      json.RawMessage
	Status        string
	StatusDetails map[string]string
	Version       int64
	Number        int64
	// Updates lists every status accepted for it, in order.
	Updates []string
}

// Service is the fake. Set Deliver before the first Publish.
type Service struct {
	thing  string
	prefix string

	// Deliver receives the service's messages to the device (responses
	// and notifications); the client's HandleMessage.
	Deliver func(topic string, payload []byte)

	connects atomic.Uint64

	mu         sync.Mutex
	jobs       []*Execution // guarded by mu; in queue order
	lastNext   string       // guarded by mu; jobId of the last notify-next
	offline    bool         // guarded by mu
	dropNext   int          // guarded by mu; responses to drop
	throttle   int          // guarded by mu; requests to answer RequestThrottled
	dupNotify  bool         // guarded by mu; send every notify-next twice
	requests   []string     // guarded by mu; API of each request received
	violations []string     // guarded by mu; protocol misuse by the device
}

// New returns a service for thing, connected once.
func New(thing string) *Service {
	s := &Service{thing: thing, prefix: "$aws/things/" + thing + "/jobs/"}
	s.connects.Store(1)
	return s
}

// Connects counts (re)connects (Options.Connects of the client).
func (s *Service) Connects() uint64 { return s.connects.Load() }

// SetOffline makes Publish fail and stops deliveries (what is sent while
// offline is lost). Going online again counts as a reconnect.
func (s *Service) SetOffline(off bool) {
	s.mu.Lock()
	was := s.offline
	s.offline = off
	s.mu.Unlock()
	if was && !off {
		s.connects.Add(1)
	}
}

// DropResponses makes the next n responses get lost.
func (s *Service) DropResponses(n int) { s.mu.Lock(); s.dropNext = n; s.mu.Unlock() }

// Throttle makes the next n requests be rejected with RequestThrottled.
func (s *Service) Throttle(n int) { s.mu.Lock(); s.throttle = n; s.mu.Unlock() }

// DuplicateNotifications sends every notify-next twice.
func (s *Service) DuplicateNotifications(on bool) { s.mu.Lock(); s.dupNotify = on; s.mu.Unlock() }

// Requests returns the APIs called so far ("$next/get", "start-next",
// "<jobId>/update:<STATUS>", ...).
func (s *Service) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// Violations lists protocol misuse seen (a test should expect none).
func (s *Service) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

// Add queues a job with document doc and notifies if it became next.
func (s *Service) Add(jobID string, doc any) {
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	s.jobs = append(s.jobs, &Execution{JobID: jobID, Document: b, Status: "QUEUED", Version: 1, Number: 1})
	out := s.notifyLocked()
	s.mu.Unlock()
	s.send(out)
}

// Get returns a copy of jobID's execution.
func (s *Service) Get(jobID string) (Execution, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.findLocked(jobID); e != nil {
		c := *e
		c.StatusDetails = clone(e.StatusDetails)
		c.Updates = append([]string(nil), e.Updates...)
		return c, true
	}
	return Execution{}, false
}

// BumpVersion changes jobID's version as a concurrent writer would (the
// device's next update then gets VersionMismatch).
func (s *Service) BumpVersion(jobID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.findLocked(jobID); e != nil {
		e.Version++
	}
}

// Cancel moves jobID to CANCELED (terminal).
func (s *Service) Cancel(jobID string) {
	s.mu.Lock()
	if e := s.findLocked(jobID); e != nil && !terminal(e.Status) {
		e.Status = "CANCELED"
		e.Version++
	}
	out := s.notifyLocked()
	s.mu.Unlock()
	s.send(out)
}

type msg struct {
	topic   string
	payload []byte
}

// Publish is the device publishing topic (the client's Publisher).
func (s *Service) Publish(_ context.Context, topic string, payload []byte) error {
	s.mu.Lock()
	if s.offline {
		s.mu.Unlock()
		return ErrOffline
	}
	out := s.handleLocked(topic, payload)
	if s.dropNext > 0 && len(out) > 0 && !strings.HasSuffix(out[0].topic, "notify-next") {
		s.dropNext--
		out = out[1:]
	}
	s.mu.Unlock()
	s.send(out)
	return nil
}

func (s *Service) send(out []msg) {
	for _, m := range out {
		s.mu.Lock()
		off := s.offline
		s.mu.Unlock()
		if !off && s.Deliver != nil {
			s.Deliver(m.topic, m.payload)
		}
	}
}

func (s *Service) handleLocked(topic string, payload []byte) []msg {
	api, ok := strings.CutPrefix(topic, s.prefix)
	if !ok {
		s.violations = append(s.violations, "publish outside the thing's jobs topics: "+topic)
		return nil
	}
	var req struct {
		ClientToken     string            `json:"clientToken"`
		Status          string            `json:"status"`
		StatusDetails   map[string]string `json:"statusDetails"`
		ExpectedVersion *int64            `json:"expectedVersion"`
		IncludeState    bool              `json:"includeJobExecutionState"`
		IncludeDoc      *bool             `json:"includeJobDocument"`
	}
	if err := json.Unmarshal(payload, &req); err != nil {
		return s.reject(api, "", "InvalidJson", err.Error(), nil)
	}
	rec := api
	if req.Status != "" {
		rec += ":" + req.Status
	}
	s.requests = append(s.requests, rec)
	if s.throttle > 0 {
		s.throttle--
		return s.reject(api, req.ClientToken, "RequestThrottled", "throttled", nil)
	}
	for k, v := range req.StatusDetails {
		if k == "" || len(k) > 128 || v == "" || len(v) > 1024 || !detailValue.MatchString(v) {
			s.violations = append(s.violations, fmt.Sprintf("bad statusDetails %q=%q", k, v))
			return s.reject(api, req.ClientToken, "InvalidRequest", "bad statusDetails", nil)
		}
	}
	switch {
	case api == "start-next":
		e := s.nextLocked()
		resp := map[string]any{"clientToken": req.ClientToken, "timestamp": 1}
		var out []msg
		if e != nil {
			if e.Status == "QUEUED" {
				if cur := s.inProgressLocked(); cur != nil {
					s.violations = append(s.violations, "two executions in progress")
				}
				e.Status = "IN_PROGRESS"
				e.Version++
				if req.StatusDetails != nil {
					e.StatusDetails = clone(req.StatusDetails)
				}
				e.Updates = append(e.Updates, "IN_PROGRESS")
			}
			resp["execution"] = view(e, true)
		}
		return append([]msg{s.reply(api, true, resp)}, out...)
	case strings.HasSuffix(api, "/get"):
		id := strings.TrimSuffix(api, "/get")
		var e *Execution
		if id == "$next" {
			e = s.nextLocked()
		} else {
			e = s.findLocked(id)
			if e == nil {
				return s.reject(api, req.ClientToken, "ResourceNotFound", "no such job", nil)
			}
			if terminal(e.Status) {
				return s.reject(api, req.ClientToken, "TerminalStateReached", "terminal", nil)
			}
		}
		resp := map[string]any{"clientToken": req.ClientToken, "timestamp": 1}
		if e != nil {
			resp["execution"] = view(e, req.IncludeDoc == nil || *req.IncludeDoc)
		}
		return []msg{s.reply(api, true, resp)}
	case strings.HasSuffix(api, "/update"):
		id := strings.TrimSuffix(api, "/update")
		e := s.findLocked(id)
		if e == nil {
			return s.reject(api, req.ClientToken, "ResourceNotFound", "no such job", nil)
		}
		switch req.Status {
		case "IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED":
		default:
			s.violations = append(s.violations, "update with status "+req.Status)
			return s.reject(api, req.ClientToken, "InvalidRequest", "bad status", nil)
		}
		if req.ExpectedVersion != nil && *req.ExpectedVersion != e.Version {
			return s.reject(api, req.ClientToken, "VersionMismatch", "version mismatch", e)
		}
		if terminal(e.Status) {
			return s.reject(api, req.ClientToken, "InvalidStateTransition", "terminal", e)
		}
		if e.Status == "QUEUED" && req.Status == "IN_PROGRESS" {
			if cur := s.inProgressLocked(); cur != nil && cur != e {
				s.violations = append(s.violations, "two executions in progress")
			}
		}
		e.Status = req.Status
		e.Version++
		if req.StatusDetails != nil {
			e.StatusDetails = clone(req.StatusDetails)
		}
		e.Updates = append(e.Updates, req.Status)
		resp := map[string]any{"clientToken": req.ClientToken, "timestamp": 1}
		if req.IncludeState {
			resp["executionState"] = state(e)
		}
		out := []msg{s.reply(api, true, resp)}
		return append(out, s.notifyLocked()...)
	}
	return s.reject(api, req.ClientToken, "InvalidTopic", "no such API", nil)
}

func (s *Service) reply(api string, ok bool, body map[string]any) msg {
	suffix := "/rejected"
	if ok {
		suffix = "/accepted"
	}
	b, _ := json.Marshal(body)
	return msg{topic: s.prefix + api + suffix, payload: b}
}

func (s *Service) reject(api, tok, code, message string, e *Execution) []msg {
	body := map[string]any{"code": code, "message": message, "clientToken": tok, "timestamp": 1}
	if e != nil {
		body["executionState"] = state(e)
	}
	return []msg{s.reply(api, false, body)}
}

// notifyLocked returns a notify-next message if the next execution changed.
func (s *Service) notifyLocked() []msg {
	e := s.nextLocked()
	id := ""
	if e != nil {
		id = e.JobID
	}
	if id == s.lastNext {
		return nil
	}
	s.lastNext = id
	body := map[string]any{"timestamp": 1}
	if e != nil {
		body["execution"] = view(e, true)
	}
	b, _ := json.Marshal(body)
	m := msg{topic: s.prefix + "notify-next", payload: b}
	if s.dupNotify {
		return []msg{m, m}
	}
	return []msg{m}
}

// nextLocked is the oldest IN_PROGRESS execution, else the oldest QUEUED.
func (s *Service) nextLocked() *Execution {
	if e := s.inProgressLocked(); e != nil {
		return e
	}
	for _, e := range s.jobs {
		if e.Status == "QUEUED" {
			return e
		}
	}
	return nil
}

func (s *Service) inProgressLocked() *Execution {
	for _, e := range s.jobs {
		if e.Status == "IN_PROGRESS" {
			return e
		}
	}
	return nil
}

func (s *Service) findLocked(id string) *Execution {
	for _, e := range s.jobs {
		if e.JobID == id {
			return e
		}
	}
	return nil
}

func view(e *Execution, doc bool) map[string]any {
	v := map[string]any{"jobId": e.JobID, "status": e.Status, "versionNumber": e.Version,
		"executionNumber": e.Number, "queuedAt": 1}
	if len(e.StatusDetails) > 0 {
		v["statusDetails"] = e.StatusDetails
	}
	if doc {
		v["jobDocument"] = e.Document
	}
	return v
}

func state(e *Execution) map[string]any {
	return map[string]any{"status": e.Status, "statusDetails": e.StatusDetails, "versionNumber": e.Version}
}

func terminal(s string) bool {
	switch s {
	case "SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT", "REMOVED", "CANCELED":
		return true
	}
	return false
}

func clone(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
