package devcloud

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// ctlPrefix is the dev cloud's control-plane namespace: the CLI (a plain
// MQTT client, like `send`) publishes requests on ctlPrefix+<op> and gets
// the answer on ctlPrefix+<op>+"/reply", sent only to its connection.
// Thing and claim certificates may not use it (the ACL denies it).
const ctlPrefix = "devcloud/ctl/"

// Control operations.
const (
	CtlInfo        = "info"
	CtlJobCreate   = "job/create"
	CtlJobList     = "job/list"
	CtlJobDescribe = "job/describe"
	CtlJobCancel   = "job/cancel"
)

// CtlTopic is the request topic of a control operation.
func CtlTopic(op string) string { return ctlPrefix + op }

// CtlReplyTopic is the reply topic of a control operation.
func CtlReplyTopic(op string) string { return ctlPrefix + op + "/reply" }

// CtlRequest is a control-plane request.
type CtlRequest struct {
	Thing    string          `json:"thing,omitempty"`
	JobID    string          `json:"jobId,omitempty"`
	Document json.RawMessage `json:"document,omitempty"`
	// File, with Document, is a file the CLI put into the dev cloud's
	// directory: the document's "url" becomes its presigned URL.
	File string `json:"file,omitempty"`
	// InProgressTimeout is the job's in-progress timeout ("10m").
	InProgressTimeout string `json:"inProgressTimeout,omitempty"`
}

// CtlReply is a control-plane reply.
type CtlReply struct {
	Error      string         `json:"error,omitempty"`
	Info       *CtlInfoReply  `json:"info,omitempty"`
	JobID      string         `json:"jobId,omitempty"`
	Executions []JobExecution `json:"executions,omitempty"`
}

// CtlInfoReply tells a CLI where the dev cloud keeps its files.
type CtlInfoReply struct {
	Dir            string `json:"dir"`
	FilesURL       string `json:"filesUrl,omitempty"`
	FilesCA        string `json:"filesCa,omitempty"`
	FleetPublicKey string `json:"fleetPublicKey,omitempty"`
}

// jobsServing is what ServeJobs set.
type jobsServing struct {
	mu    sync.Mutex
	dir   string      // guarded by mu
	files *FileServer // guarded by mu
	pub   string      // guarded by mu
}

// ServeJobs makes the control plane advertise dir (the dev cloud
// directory), the file server (may be nil) and the fleet public key, and
// lets job documents use the file server's presigned URLs.
func (c *Cloud) ServeJobs(dir string, files *FileServer, fleetPublicKey string) {
	c.serving.mu.Lock()
	c.serving.dir, c.serving.files, c.serving.pub = dir, files, fleetPublicKey
	c.serving.mu.Unlock()
	if files != nil {
		c.jobs.SetPresigner(files)
	}
}

// control serves one control-plane request.
func (c *Cloud) control(clientID, topic string, payload []byte) {
	op, ok := strings.CutPrefix(topic, ctlPrefix)
	if !ok || strings.HasSuffix(op, "/reply") {
		return
	}
	var req CtlRequest
	var rep CtlReply
	if err := json.Unmarshal(payload, &req); err != nil {
		rep.Error = "bad request: " + err.Error()
	} else if err := c.ctl(op, req, &rep); err != nil {
		rep.Error = err.Error()
	}
	b, _ := json.Marshal(rep)
	if err := c.replyTo(clientID, CtlReplyTopic(op), b); err != nil {
		c.log.Warn("devcloud control reply", "op", op, "err", err)
	}
}

func (c *Cloud) ctl(op string, req CtlRequest, rep *CtlReply) error {
	c.serving.mu.Lock()
	dir, files, pub := c.serving.dir, c.serving.files, c.serving.pub
	c.serving.mu.Unlock()
	switch op {
	case CtlInfo:
		if dir == "" {
			return errors.New("this dev cloud serves no jobs directory (serve --dir)")
		}
		rep.Info = &CtlInfoReply{Dir: dir, FleetPublicKey: pub}
		if files != nil {
			rep.Info.FilesURL, rep.Info.FilesCA = files.URL(), files.CAFile()
		}
	case CtlJobCreate:
		doc := req.Document
		if req.File != "" {
			if files == nil {
				return errors.New("no file server (serve --files-addr)")
			}
			var d map[string]any
			if err := json.Unmarshal(doc, &d); err != nil {
				return fmt.Errorf("document: %w", err)
			}
			d["url"] = PresignedURLPlaceholder(req.File)
			doc, _ = json.Marshal(d)
		}
		var tmo time.Duration
		if req.InProgressTimeout != "" {
			var err error
			if tmo, err = time.ParseDuration(req.InProgressTimeout); err != nil {
				return fmt.Errorf("inProgressTimeout: %w", err)
			}
		}
		id := req.JobID
		if id == "" {
			id = "tcu-config-" + strings.ReplaceAll(newUUID(), "-", "")[:16]
		}
		if err := c.jobs.Create(JobSpec{ID: id, Things: []string{req.Thing}, Document: doc, InProgressTimeout: tmo}); err != nil {
			return err
		}
		rep.JobID = id
	case CtlJobList:
		rep.Executions = c.jobs.Executions(req.Thing)
		for i := range rep.Executions {
			rep.Executions[i].Document = nil
		}
	case CtlJobDescribe:
		e, ok := c.jobs.Execution(req.Thing, req.JobID)
		if !ok {
			return fmt.Errorf("no job execution %s for thing %s", req.JobID, req.Thing)
		}
		rep.Executions = []JobExecution{e}
	case CtlJobCancel:
		return c.jobs.Cancel(req.JobID)
	default:
		return fmt.Errorf("unknown operation %q", op)
	}
	return nil
}
