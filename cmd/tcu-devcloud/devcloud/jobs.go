package devcloud

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Job execution statuses (AWS IoT Jobs, aws-iot-reference.md §4.5).
const (
	JobQueued     = "QUEUED"
	JobInProgress = "IN_PROGRESS"
	JobSucceeded  = "SUCCEEDED"
	JobFailed     = "FAILED"
	JobTimedOut   = "TIMED_OUT"
	JobRejected   = "REJECTED"
	JobCanceled   = "CANCELED"
)

// Jobs error codes sent on …/rejected (aws-iot-reference.md §4.3).
const (
	CodeInvalidTopic           = "InvalidTopic"
	CodeInvalidJSON            = "InvalidJson"
	CodeInvalidRequest         = "InvalidRequest"
	CodeInvalidStateTransition = "InvalidStateTransition"
	CodeResourceNotFound       = "ResourceNotFound"
	CodeVersionMismatch        = "VersionMismatch"
	CodeTerminalStateReached   = "TerminalStateReached"
)

// Jobs limits (aws-iot-reference.md §4.4).
const (
	MaxJobDocument      = 32 * 1024
	maxDetailKey        = 128
	maxDetailValue      = 1024
	maxClientToken      = 64
	maxStepTimeoutMin   = 10080
	maxInProgressTmoMin = 10080
)

var (
	jobIDRe     = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	detailKeyRe = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)
	thingNameRe = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)
)

// JobTerminal reports whether status is final.
func JobTerminal(status string) bool {
	switch status {
	case JobSucceeded, JobFailed, JobTimedOut, JobRejected, JobCanceled, "REMOVED":
		return true
	}
	return false
}

// JobSpec describes a job to create.
type JobSpec struct {
	// ID is the job ID (1–64 of [a-zA-Z0-9_-]); it must be new.
	ID string
	// Things are the targets; one execution is queued per thing.
	Things []string
	// Document is the job document, a JSON object of at most 32 KB. A
	// string "${devcloud:presigned-url:NAME}" in it is replaced, each
	// time the document is delivered, by a fresh presigned URL of file
	// NAME on the file server (as AWS does with
	// ${aws:iot:s3-presigned-url:…}).
	Document []byte
	// InProgressTimeout is the job's in-progress timer (AWS
	// inProgressTimeoutInMinutes); 0 means none.
	InProgressTimeout time.Duration
}

// JobExecution is a snapshot of one job execution.
type JobExecution struct {
	JobID             string            `json:"jobId"`
	ThingName         string            `json:"thingName"`
	Status            string            `json:"status"`
	StatusDetails     map[string]string `json:"statusDetails,omitempty"`
	QueuedAt          time.Time         `json:"queuedAt"`
	StartedAt         time.Time         `json:"startedAt,omitzero"`
	LastUpdatedAt     time.Time         `json:"lastUpdatedAt"`
	VersionNumber     int64             `json:"versionNumber"`
	ExecutionNumber   int64             `json:"executionNumber"`
	Document          json.RawMessage   `json:"jobDocument,omitempty"`
	InProgressTimeout time.Duration     `json:"-"`
}

// Presigner turns a file name into a URL valid for a limited time.
type Presigner interface {
	Presign(name string) (string, error)
}

// execution is the service's record of one job execution.
type execution struct {
	JobExecution
	seq      int64       // creation order within the service
	stepEnd  time.Time   // step timer deadline (zero: none)
	progEnd  time.Time   // in-progress timer deadline (zero: none)
	timer    *time.Timer // fires at the earlier deadline
	timerGen int
}

// job is a created job.
type job struct {
	doc               json.RawMessage
	inProgressTimeout time.Duration
	execNumbers       int64
}

// outMsg is a message the service sends after a state change.
type outMsg struct {
	clientID string // "" publishes to subscribers; else only to that connection
	topic    string
	payload  []byte
	changed  *JobExecution // if set, not a message: observers see this change
}

// Jobs is the AWS IoT Jobs device MQTT API of the dev cloud: per-thing
// job executions, their status transitions and timers, and the
// notify / notify-next / accepted / rejected messages.
type Jobs struct {
	c      *Cloud
	minute time.Duration

	sendMu sync.Mutex // held from a state change until its messages are sent
	mu     sync.Mutex
	jobs   map[string]*job                  // guarded by mu; by job ID
	execs  map[string]map[string]*execution // guarded by mu; by thing, job ID
	next   map[string]string                // guarded by mu; by thing: the job ID notify-next last announced
	seq    int64                            // guarded by mu
	pre    Presigner                        // guarded by mu
	obs    []func(JobExecution)             // guarded by mu
	closed bool                             // guarded by mu
}

func newJobs(c *Cloud, minute time.Duration) *Jobs {
	if minute <= 0 {
		minute = time.Minute
	}
	return &Jobs{c: c, minute: minute, jobs: map[string]*job{},
		execs: map[string]map[string]*execution{}, next: map[string]string{}}
}

// Jobs returns the Jobs service.
func (c *Cloud) Jobs() *Jobs { return c.jobs }

// SetPresigner sets the presigner that resolves presigned-URL
// placeholders in job documents.
func (j *Jobs) SetPresigner(p Presigner) {
	j.mu.Lock()
	j.pre = p
	j.mu.Unlock()
}

// PresignedURLPlaceholder is the document string replaced by a fresh
// presigned URL of file name at each delivery.
func PresignedURLPlaceholder(name string) string { return "${devcloud:presigned-url:" + name + "}" }

var placeholderRe = regexp.MustCompile(`\$\{devcloud:presigned-url:([A-Za-z0-9._-]+)\}`)

// Create creates a job and queues one execution per target thing.
func (j *Jobs) Create(spec JobSpec) error {
	if !jobIDRe.MatchString(spec.ID) {
		return fmt.Errorf("create job: invalid job id %q", spec.ID)
	}
	if len(spec.Things) == 0 {
		return errors.New("create job: no target thing")
	}
	for _, t := range spec.Things {
		if !thingNameRe.MatchString(t) {
			return fmt.Errorf("create job: invalid thing name %q", t)
		}
	}
	if len(spec.Document) > MaxJobDocument {
		return fmt.Errorf("create job: document is %d bytes, more than %d", len(spec.Document), MaxJobDocument)
	}
	var obj map[string]any
	if err := json.Unmarshal(spec.Document, &obj); err != nil || obj == nil {
		return errors.New("create job: document is not a JSON object")
	}
	if spec.InProgressTimeout < 0 || spec.InProgressTimeout > maxInProgressTmoMin*j.minute {
		return fmt.Errorf("create job: in-progress timeout %v out of range", spec.InProgressTimeout)
	}
	var doc bytes.Buffer
	_ = json.Compact(&doc, spec.Document)
	j.sendMu.Lock()
	defer j.sendMu.Unlock()
	j.mu.Lock()
	if _, dup := j.jobs[spec.ID]; dup {
		j.mu.Unlock()
		return fmt.Errorf("create job: job %q already exists", spec.ID)
	}
	jb := &job{doc: doc.Bytes(), inProgressTimeout: spec.InProgressTimeout}
	j.jobs[spec.ID] = jb
	now := time.Now()
	var out []outMsg
	for _, thing := range spec.Things {
		if j.execs[thing] == nil {
			j.execs[thing] = map[string]*execution{}
		}
		jb.execNumbers++
		j.seq++
		j.execs[thing][spec.ID] = &execution{seq: j.seq, JobExecution: JobExecution{
			JobID: spec.ID, ThingName: thing, Status: JobQueued, QueuedAt: now, LastUpdatedAt: now,
			VersionNumber: 1, ExecutionNumber: jb.execNumbers, Document: jb.doc, InProgressTimeout: spec.InProgressTimeout}}
		out = append(out, changedLocked(j.execs[thing][spec.ID]))
		out = append(out, j.listChangedLocked(thing, now)...)
	}
	j.mu.Unlock()
	j.send(out)
	return nil
}

// Cancel moves every non-terminal execution of a job to CANCELED.
func (j *Jobs) Cancel(jobID string) error {
	j.sendMu.Lock()
	defer j.sendMu.Unlock()
	j.mu.Lock()
	if j.jobs[jobID] == nil {
		j.mu.Unlock()
		return fmt.Errorf("cancel job: no job %q", jobID)
	}
	now := time.Now()
	var out []outMsg
	for thing, m := range j.execs {
		if e := m[jobID]; e != nil && !JobTerminal(e.Status) {
			j.finishLocked(e, JobCanceled, now)
			out = append(out, changedLocked(e))
			out = append(out, j.listChangedLocked(thing, now)...)
		}
	}
	j.mu.Unlock()
	j.send(out)
	return nil
}

// Executions returns a thing's executions, oldest first (documents as
// stored, placeholders unresolved).
func (j *Jobs) Executions(thing string) []JobExecution {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []JobExecution
	for _, e := range j.sortedLocked(thing) {
		x := e.JobExecution
		x.StatusDetails = maps(e.StatusDetails)
		out = append(out, x)
	}
	return out
}

// Execution returns one execution.
func (j *Jobs) Execution(thing, jobID string) (JobExecution, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	e := j.execs[thing][jobID]
	if e == nil {
		return JobExecution{}, false
	}
	x := e.JobExecution
	x.StatusDetails = maps(e.StatusDetails)
	return x, true
}

func maps(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// close stops the timers.
func (j *Jobs) close() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.closed = true
	for _, m := range j.execs {
		for _, e := range m {
			if e.timer != nil {
				e.timer.Stop()
			}
		}
	}
}

func (j *Jobs) sortedLocked(thing string) []*execution {
	var es []*execution
	for _, e := range j.execs[thing] {
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b *execution) int { return int(a.seq - b.seq) })
	return es
}

// nextLocked is the thing's next pending execution: IN_PROGRESS before
// QUEUED, oldest first; nil if none.
func (j *Jobs) nextLocked(thing string) *execution {
	var queued *execution
	for _, e := range j.sortedLocked(thing) {
		switch e.Status {
		case JobInProgress:
			return e
		case JobQueued:
			if queued == nil {
				queued = e
			}
		}
	}
	return queued
}

// listChangedLocked returns the notify message after the pending list of
// thing changed, and notify-next if the next job changed.
func (j *Jobs) listChangedLocked(thing string, now time.Time) []outMsg {
	prefix := jobsPrefix(thing)
	lists := map[string][]jobSummary{}
	for _, e := range j.sortedLocked(thing) {
		if e.Status == JobQueued || e.Status == JobInProgress {
			lists[e.Status] = append(lists[e.Status], summary(e))
		}
	}
	notify, _ := json.Marshal(map[string]any{"timestamp": now.Unix(), "jobs": lists})
	return append([]outMsg{{topic: prefix + "notify", payload: notify}}, j.nextChangedLocked(thing, now)...)
}

// nextChangedLocked returns notify-next if the thing's next job changed.
func (j *Jobs) nextChangedLocked(thing string, now time.Time) []outMsg {
	var out []outMsg
	next := j.nextLocked(thing)
	id := ""
	if next != nil {
		id = next.JobID
	}
	if id != j.next[thing] {
		j.next[thing] = id
		body := map[string]any{"timestamp": now.Unix()}
		if next != nil {
			body["execution"] = j.wireLocked(next, true)
		}
		p, _ := json.Marshal(body)
		out = append(out, outMsg{topic: jobsPrefix(thing) + "notify-next", payload: p})
	}
	return out
}

func jobsPrefix(thing string) string { return "$aws/things/" + thing + "/jobs/" }

// Observe calls fn after every change of an execution (creation, status
// update, timeout, cancel), in order; fn must not call Jobs.
func (j *Jobs) Observe(fn func(JobExecution)) {
	j.mu.Lock()
	j.obs = append(j.obs, fn)
	j.mu.Unlock()
}

// changedLocked is the observers' notice of e's change.
func changedLocked(e *execution) outMsg {
	x := e.JobExecution
	x.StatusDetails, x.Document = maps(e.StatusDetails), nil
	return outMsg{changed: &x}
}

// send delivers messages in order; the caller holds sendMu.
func (j *Jobs) send(out []outMsg) {
	j.mu.Lock()
	obs := j.obs
	j.mu.Unlock()
	for _, m := range out {
		if m.changed != nil {
			for _, fn := range obs {
				fn(*m.changed)
			}
			continue
		}
		var err error
		if m.clientID == "" {
			err = j.c.Publish(m.topic, m.payload)
		} else {
			err = j.c.replyTo(m.clientID, m.topic, m.payload)
		}
		if err != nil {
			j.c.log.Debug("devcloud jobs: send", "topic", m.topic, "err", err)
		}
	}
}

// jobSummary is a JobExecutionSummary.
type jobSummary struct {
	JobID           string `json:"jobId"`
	QueuedAt        int64  `json:"queuedAt"`
	StartedAt       int64  `json:"startedAt,omitempty"`
	LastUpdatedAt   int64  `json:"lastUpdatedAt"`
	VersionNumber   int64  `json:"versionNumber"`
	ExecutionNumber int64  `json:"executionNumber"`
}

func summary(e *execution) jobSummary {
	return jobSummary{JobID: e.JobID, QueuedAt: e.QueuedAt.Unix(), StartedAt: unixOrZero(e.StartedAt),
		LastUpdatedAt: e.LastUpdatedAt.Unix(), VersionNumber: e.VersionNumber, ExecutionNumber: e.ExecutionNumber}
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// wireExecution is a JobExecution on the wire.
type wireExecution struct {
	JobID           string            `json:"jobId"`
	ThingName       string            `json:"thingName"`
	JobDocument     json.RawMessage   `json:"jobDocument,omitempty"`
	Status          string            `json:"status"`
	StatusDetails   map[string]string `json:"statusDetails,omitempty"`
	QueuedAt        int64             `json:"queuedAt"`
	StartedAt       int64             `json:"startedAt,omitempty"`
	LastUpdatedAt   int64             `json:"lastUpdatedAt"`
	VersionNumber   int64             `json:"versionNumber"`
	ExecutionNumber int64             `json:"executionNumber"`
}

func (j *Jobs) wireLocked(e *execution, withDoc bool) wireExecution {
	w := wireExecution{JobID: e.JobID, ThingName: e.ThingName, Status: e.Status, StatusDetails: e.StatusDetails,
		QueuedAt: e.QueuedAt.Unix(), StartedAt: unixOrZero(e.StartedAt), LastUpdatedAt: e.LastUpdatedAt.Unix(),
		VersionNumber: e.VersionNumber, ExecutionNumber: e.ExecutionNumber}
	if withDoc {
		w.JobDocument = j.resolveLocked(e.Document)
	}
	return w
}

// resolveLocked replaces presigned-URL placeholders by fresh URLs.
func (j *Jobs) resolveLocked(doc json.RawMessage) json.RawMessage {
	if j.pre == nil || !placeholderRe.Match(doc) {
		return doc
	}
	return placeholderRe.ReplaceAllFunc(doc, func(m []byte) []byte {
		name := string(placeholderRe.FindSubmatch(m)[1])
		u, err := j.pre.Presign(name)
		if err != nil {
			j.c.log.Warn("devcloud jobs: presign", "file", name, "err", err)
			return m
		}
		b, _ := json.Marshal(u)
		return b[1 : len(b)-1] // inside the quotes already there
	})
}

type executionState struct {
	Status        string            `json:"status"`
	StatusDetails map[string]string `json:"statusDetails,omitempty"`
	VersionNumber int64             `json:"versionNumber"`
}

func state(e *execution) *executionState {
	return &executionState{Status: e.Status, StatusDetails: maps(e.StatusDetails), VersionNumber: e.VersionNumber}
}

// finishLocked moves e to a terminal status.
func (j *Jobs) finishLocked(e *execution, status string, now time.Time) {
	e.Status, e.LastUpdatedAt = status, now
	e.VersionNumber++
	e.stepEnd, e.progEnd = time.Time{}, time.Time{}
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
}

// armLocked (re)starts e's timer for the earlier of its deadlines.
func (j *Jobs) armLocked(e *execution, now time.Time) {
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
	end := e.progEnd
	if !e.stepEnd.IsZero() && (end.IsZero() || e.stepEnd.Before(end)) {
		end = e.stepEnd
	}
	if end.IsZero() || j.closed {
		return
	}
	e.timerGen++
	gen, thing, id := e.timerGen, e.ThingName, e.JobID
	e.timer = time.AfterFunc(end.Sub(now), func() { j.timeout(thing, id, gen) })
}

// timeout moves an execution whose timer expired to TIMED_OUT.
func (j *Jobs) timeout(thing, jobID string, gen int) {
	j.sendMu.Lock()
	defer j.sendMu.Unlock()
	j.mu.Lock()
	e := j.execs[thing][jobID]
	if e == nil || e.timerGen != gen || e.Status != JobInProgress || j.closed {
		j.mu.Unlock()
		return
	}
	now := time.Now()
	j.finishLocked(e, JobTimedOut, now)
	out := append([]outMsg{changedLocked(e)}, j.listChangedLocked(thing, now)...)
	j.mu.Unlock()
	j.send(out)
}

// jobsRequest is the union of the device request fields.
type jobsRequest struct {
	ClientToken              *string            `json:"clientToken"`
	Status                   *string            `json:"status"`
	StatusDetails            *map[string]string `json:"statusDetails"`
	ExpectedVersion          *int64             `json:"expectedVersion"`
	ExecutionNumber          *int64             `json:"executionNumber"`
	IncludeJobExecutionState *bool              `json:"includeJobExecutionState"`
	IncludeJobDocument       *bool              `json:"includeJobDocument"`
	StepTimeoutInMinutes     *int64             `json:"stepTimeoutInMinutes"`
}

// jobsError is a rejection.
type jobsError struct {
	code, msg string
	state     *executionState
}

func reject(code, format string, a ...any) *jobsError {
	return &jobsError{code: code, msg: fmt.Sprintf(format, a...)}
}

// handle serves one device publish on $aws/things/<thing>/jobs/…. The
// ACL already checked that the client may use the thing's topics.
func (j *Jobs) handle(clientID, topic string, payload []byte) {
	rest, ok := strings.CutPrefix(topic, "$aws/things/")
	if !ok {
		return
	}
	thing, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return
	}
	rest, ok = strings.CutPrefix(rest, "jobs/")
	if !ok {
		return // another $aws/things service (shadow)
	}
	if rest == "notify" || rest == "notify-next" || strings.HasSuffix(rest, "/accepted") || strings.HasSuffix(rest, "/rejected") {
		return // the service's own topics: nothing to answer
	}
	now := time.Now()
	var req jobsRequest
	j.sendMu.Lock()
	defer j.sendMu.Unlock()
	var out []outMsg
	reply := func(suffix string, body map[string]any, jerr *jobsError) {
		t := topic + "/" + suffix
		body["timestamp"] = now.Unix()
		if req.ClientToken != nil { // echoed even when the request is rejected
			body["clientToken"] = *req.ClientToken
		}
		if jerr != nil {
			t = topic + "/rejected"
			body["code"], body["message"] = jerr.code, jerr.msg
			if jerr.state != nil {
				body["executionState"] = jerr.state
			}
		}
		p, _ := json.Marshal(body)
		out = append([]outMsg{{clientID: clientID, topic: t, payload: p}}, out...)
	}
	if jerr := parseJobsRequest(payload, &req); jerr != nil {
		reply("", map[string]any{}, jerr)
		j.send(out)
		return
	}
	j.mu.Lock()
	var body map[string]any
	var jerr *jobsError
	switch {
	case rest == "get":
		body = j.getPendingLocked(thing)
	case rest == "start-next":
		var started *execution
		body, started, jerr = j.startNextLocked(thing, &req, now)
		if started != nil {
			out = append(out, changedLocked(started))
		}
	case strings.HasSuffix(rest, "/get") && strings.Count(rest, "/") == 1:
		body, jerr = j.describeLocked(thing, strings.TrimSuffix(rest, "/get"), &req)
	case strings.HasSuffix(rest, "/update") && strings.Count(rest, "/") == 1:
		var changed bool
		body, changed, jerr = j.updateLocked(thing, strings.TrimSuffix(rest, "/update"), &req, now)
		if jerr == nil {
			out = append(out, changedLocked(j.execs[thing][strings.TrimSuffix(rest, "/update")]))
		}
		if changed {
			out = append(out, j.listChangedLocked(thing, now)...)
		} else if jerr == nil {
			out = append(out, j.nextChangedLocked(thing, now)...) // an IN_PROGRESS job goes first
		}
	default:
		jerr = reject(CodeInvalidTopic, "topic %s matches no Jobs API", topic)
	}
	j.mu.Unlock()
	if body == nil {
		body = map[string]any{}
	}
	reply("accepted", body, jerr)
	j.send(out)
}

// parseJobsRequest decodes a request: InvalidJson for a body that is not
// a UTF-8 JSON object, InvalidRequest for fields of the wrong type or out
// of their limits. An empty body counts as {}.
func parseJobsRequest(payload []byte, req *jobsRequest) *jobsError {
	if len(bytes.TrimSpace(payload)) == 0 {
		return nil
	}
	var raw map[string]json.RawMessage
	if !utf8.Valid(payload) || json.Unmarshal(payload, &raw) != nil || raw == nil {
		return reject(CodeInvalidJSON, "the request is not a JSON object")
	}
	if err := json.Unmarshal(payload, req); err != nil {
		return reject(CodeInvalidRequest, "invalid field: %v", err)
	}
	if req.ClientToken != nil && (len(*req.ClientToken) == 0 || len(*req.ClientToken) > maxClientToken) {
		return reject(CodeInvalidRequest, "clientToken must be 1-%d characters", maxClientToken)
	}
	if req.StatusDetails != nil {
		for k, v := range *req.StatusDetails {
			if !detailKeyRe.MatchString(k) {
				return reject(CodeInvalidRequest, "statusDetails key %q: 1-%d characters of [a-zA-Z0-9:_-]", k, maxDetailKey)
			}
			if n := utf8.RuneCountInString(v); n < 1 || n > maxDetailValue {
				return reject(CodeInvalidRequest, "statusDetails %s: value must be 1-%d characters, is %d", k, maxDetailValue, n)
			}
			// The service's pattern is [^\p{C}]+: no control, format or
			// private-use characters (a newline included).
			if strings.ContainsFunc(v, func(r rune) bool { return unicode.In(r, unicode.C) }) {
				return reject(CodeInvalidRequest, "statusDetails %s: value has a control or format character", k)
			}
		}
	}
	if s := req.StepTimeoutInMinutes; s != nil && (*s < 1 || *s > maxStepTimeoutMin) {
		return reject(CodeInvalidRequest, "stepTimeoutInMinutes must be 1-%d", maxStepTimeoutMin)
	}
	return nil
}

func (j *Jobs) getPendingLocked(thing string) map[string]any {
	inProgress, queued := []jobSummary{}, []jobSummary{}
	for _, e := range j.sortedLocked(thing) {
		switch e.Status {
		case JobInProgress:
			inProgress = append(inProgress, summary(e))
		case JobQueued:
			queued = append(queued, summary(e))
		}
	}
	return map[string]any{"inProgressJobs": inProgress, "queuedJobs": queued}
}

func (j *Jobs) startNextLocked(thing string, req *jobsRequest, now time.Time) (map[string]any, *execution, *jobsError) {
	e := j.nextLocked(thing)
	if e == nil {
		return map[string]any{}, nil, nil // nothing pending: no "execution"
	}
	var started *execution
	if e.Status == JobQueued {
		started = e
		e.Status, e.StartedAt, e.LastUpdatedAt = JobInProgress, now, now
		e.VersionNumber++
		if req.StatusDetails != nil {
			e.StatusDetails = maps(*req.StatusDetails)
		}
		if e.InProgressTimeout > 0 {
			e.progEnd = now.Add(e.InProgressTimeout)
		}
		if req.StepTimeoutInMinutes != nil {
			e.stepEnd = now.Add(time.Duration(*req.StepTimeoutInMinutes) * j.minute)
		}
		j.armLocked(e, now)
	}
	return map[string]any{"execution": j.wireLocked(e, true)}, started, nil
}

func (j *Jobs) describeLocked(thing, jobID string, req *jobsRequest) (map[string]any, *jobsError) {
	var e *execution
	if jobID == "$next" {
		if e = j.nextLocked(thing); e == nil {
			return map[string]any{}, nil // nothing pending: no "execution"
		}
	} else {
		if !jobIDRe.MatchString(jobID) {
			return nil, reject(CodeInvalidRequest, "invalid job id %q", jobID)
		}
		if e = j.execs[thing][jobID]; e == nil {
			return nil, reject(CodeResourceNotFound, "no job execution %s for thing %s", jobID, thing)
		}
	}
	if req.ExecutionNumber != nil && *req.ExecutionNumber != e.ExecutionNumber {
		return nil, reject(CodeResourceNotFound, "no execution number %d of job %s for thing %s", *req.ExecutionNumber, e.JobID, thing)
	}
	if JobTerminal(e.Status) {
		return nil, reject(CodeTerminalStateReached, "job execution %s is %s", e.JobID, e.Status)
	}
	withDoc := req.IncludeJobDocument == nil || *req.IncludeJobDocument
	return map[string]any{"execution": j.wireLocked(e, withDoc)}, nil
}

// updateLocked applies an UpdateJobExecution; changed reports whether
// the pending list changed (a terminal status).
func (j *Jobs) updateLocked(thing, jobID string, req *jobsRequest, now time.Time) (map[string]any, bool, *jobsError) {
	if !jobIDRe.MatchString(jobID) {
		return nil, false, reject(CodeInvalidRequest, "invalid job id %q (the update API takes no $next)", jobID)
	}
	if req.Status == nil {
		return nil, false, reject(CodeInvalidRequest, "status is required")
	}
	status := *req.Status
	switch status {
	case JobInProgress, JobSucceeded, JobFailed, JobRejected:
	default:
		return nil, false, reject(CodeInvalidRequest, "status %q: a device may set IN_PROGRESS, SUCCEEDED, FAILED or REJECTED", status)
	}
	e := j.execs[thing][jobID]
	if e == nil || (req.ExecutionNumber != nil && *req.ExecutionNumber != e.ExecutionNumber) {
		return nil, false, reject(CodeResourceNotFound, "no job execution %s for thing %s", jobID, thing)
	}
	if JobTerminal(e.Status) {
		err := reject(CodeInvalidStateTransition, "job execution %s is %s: cannot go to %s", jobID, e.Status, status)
		err.state = state(e)
		return nil, false, err
	}
	if req.ExpectedVersion != nil && *req.ExpectedVersion != e.VersionNumber {
		err := reject(CodeVersionMismatch, "expected version %d, current version is %d", *req.ExpectedVersion, e.VersionNumber)
		err.state = state(e)
		return nil, false, err
	}
	if req.StatusDetails != nil {
		e.StatusDetails = maps(*req.StatusDetails)
	}
	changed := false
	if JobTerminal(status) {
		j.finishLocked(e, status, now)
		changed = true
	} else {
		if e.Status == JobQueued {
			e.StartedAt = now
			if e.InProgressTimeout > 0 {
				e.progEnd = now.Add(e.InProgressTimeout)
			}
		}
		e.Status, e.LastUpdatedAt = status, now
		e.VersionNumber++
		if req.StepTimeoutInMinutes != nil {
			e.stepEnd = now.Add(time.Duration(*req.StepTimeoutInMinutes) * j.minute)
		}
		j.armLocked(e, now)
	}
	body := map[string]any{}
	if req.IncludeJobExecutionState != nil && *req.IncludeJobExecutionState {
		body["executionState"] = state(e)
	}
	if req.IncludeJobDocument != nil && *req.IncludeJobDocument {
		body["jobDocument"] = j.resolveLocked(e.Document)
	}
	return body, changed, nil
}
