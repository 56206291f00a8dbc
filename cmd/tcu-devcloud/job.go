package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

const jobUsage = `usage: tcu-devcloud job push BUNDLE_DIR_OR_TAR --thing THING [--version V] [--key PRIVATE_KEY] [--wait 2m]
       tcu-devcloud job list --thing THING
       tcu-devcloud job describe --thing THING [--job JOB_ID]
       tcu-devcloud job cancel --job JOB_ID
every sub-verb takes --addr 127.0.0.1:1883 (the running dev cloud's plain listener)
`

// job runs the job sub-verbs against a running dev cloud.
func job(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, jobUsage)
		return exitError(2)
	}
	switch args[0] {
	case "push":
		return jobPush(ctx, args[1:], stdout, stderr)
	case "list", "describe":
		return jobShow(ctx, args[0], args[1:], stdout, stderr)
	case "cancel":
		return jobCancel(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, jobUsage)
		return nil
	}
	fmt.Fprintf(stderr, "tcu-devcloud job: unknown sub-verb %q\n", args[0])
	fmt.Fprint(stderr, jobUsage)
	return exitError(2)
}

// jobFlags is a sub-verb's flag set with --addr and --timeout.
func jobFlags(name string, stderr io.Writer) (*flag.FlagSet, *string, *time.Duration) {
	fs := flag.NewFlagSet("job "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:1883", "the dev cloud's plain TCP address")
	timeout := fs.Duration("timeout", 15*time.Second, "how long to wait for the dev cloud's answers")
	return fs, addr, timeout
}

func jobPush(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, addr, timeout := jobFlags("push", stderr)
	thing := fs.String("thing", "", "target thing name (required)")
	ver := fs.String("version", "", "bundle version, free text of at most 64 characters (default: the UTC time)")
	keyPath := fs.String("key", "", "Ed25519 private key to sign with (PKCS#8 PEM or base64); default: the dev cloud's fleet key")
	jobID := fs.String("job-id", "", "job ID (default: generated)")
	forceURL := fs.Bool("url", false, "serve the bundle from the file server even if it fits inline")
	wait := fs.Duration("wait", 0, "wait this long for the execution to end; exit 0 only on SUCCEEDED (0: do not wait)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: tcu-devcloud job push BUNDLE_DIR_OR_TAR --thing THING [flags]")
		fmt.Fprintln(fs.Output(), "builds the bundle (a directory: tcu-agent.toml and the files it references), signs it and queues a tcu.config.v1 job")
		fs.PrintDefaults()
	}
	// The bundle may come before or after the flags.
	var bundlePath string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		bundlePath, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitError(0)
		}
		return exitError(2)
	}
	rest := fs.Args()
	if bundlePath == "" && len(rest) > 0 {
		bundlePath, rest = rest[0], rest[1:]
		if err := fs.Parse(rest); err != nil {
			return exitError(2)
		}
		rest = fs.Args()
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "unexpected argument %q\n", rest[0])
		fs.Usage()
		return exitError(2)
	}
	if bundlePath == "" || *thing == "" {
		fs.Usage()
		return exitError(2)
	}
	if *ver == "" {
		*ver = devcloud.DefaultVersion(time.Now())
	}
	bundle, err := devcloud.BuildBundle(bundlePath)
	if err != nil {
		return err
	}
	cl, err := dialCtl(ctx, *addr, *timeout, stderr)
	if err != nil {
		return err
	}
	defer cl.close()
	var info devcloud.CtlReply
	if err := cl.call(ctx, devcloud.CtlInfo, devcloud.CtlRequest{}, &info); err != nil {
		return err
	}
	var key ed25519.PrivateKey
	if *keyPath != "" {
		key, err = devcloud.LoadPrivateKey(*keyPath)
	} else {
		key, err = devcloud.LoadOrCreateFleetKey(info.Info.Dir)
	}
	if err != nil {
		return err
	}
	doc, err := devcloud.NewDocument(key, *ver, bundle)
	if err != nil {
		return err
	}
	req := devcloud.CtlRequest{Thing: *thing, JobID: *jobID}
	how := "inline"
	if b, ok := devcloud.InlineDocument(doc, bundle); ok && !*forceURL {
		req.Document = b
	} else {
		if info.Info.FilesURL == "" {
			return errors.New("the bundle does not fit a 32 KB job document and the dev cloud has no file server (serve --files-addr)")
		}
		var r [16]byte
		_, _ = rand.Read(r[:])
		name := hex.EncodeToString(r[:]) + ".tar"
		if err := devcloud.PutFile(info.Info.Dir, name, bundle); err != nil {
			return err
		}
		req.Document, _ = json.Marshal(doc)
		req.File = name
		how = "url " + info.Info.FilesURL
	}
	var created devcloud.CtlReply
	if err := cl.call(ctx, devcloud.CtlJobCreate, req, &created); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "job %s queued for %s: version %s, %d bytes, sha256 %s, %s, signed by %s\n",
		created.JobID, *thing, *ver, len(bundle), doc.SHA256, how, devcloud.PublicKeyBase64(key))
	if *wait <= 0 {
		return nil
	}
	return cl.waitFinal(ctx, *thing, created.JobID, *wait, stdout)
}

// waitFinal polls the execution until it ends and prints it.
func (c *ctlClient) waitFinal(ctx context.Context, thing, jobID string, wait time.Duration, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	last := ""
	for {
		var rep devcloud.CtlReply
		if err := c.call(ctx, devcloud.CtlJobDescribe, devcloud.CtlRequest{Thing: thing, JobID: jobID}, &rep); err != nil {
			return err
		}
		e := rep.Executions[0]
		if line := execLine(e); line != last {
			fmt.Fprintln(stdout, line)
			last = line
		}
		if devcloud.JobTerminal(e.Status) {
			if e.Status == devcloud.JobSucceeded {
				return nil
			}
			return exitError(1)
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(stdout, "job %s: not finished within %v\n", jobID, wait)
			return exitError(1)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func jobShow(ctx context.Context, verb string, args []string, stdout, stderr io.Writer) error {
	fs, addr, timeout := jobFlags(verb, stderr)
	thing := fs.String("thing", "", "thing name (required)")
	var jobID *string
	if verb == "describe" {
		jobID = fs.String("job", "", "job ID (default: every execution of the thing)")
	}
	fs.Usage = func() {
		if verb == "describe" {
			fmt.Fprintln(fs.Output(), "usage: tcu-devcloud job describe --thing THING [--job JOB_ID] [flags]\nprints executions with their timestamps, every statusDetails entry and the job document")
		} else {
			fmt.Fprintln(fs.Output(), "usage: tcu-devcloud job list --thing THING [flags]\nprints one line per execution: job, thing, status, version number, version/step/reason/detail")
		}
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *thing == "" {
		fmt.Fprintln(stderr, "--thing is required")
		return exitError(2)
	}
	cl, err := dialCtl(ctx, *addr, *timeout, stderr)
	if err != nil {
		return err
	}
	defer cl.close()
	var rep devcloud.CtlReply
	if jobID != nil && *jobID != "" {
		err = cl.call(ctx, devcloud.CtlJobDescribe, devcloud.CtlRequest{Thing: *thing, JobID: *jobID}, &rep)
	} else {
		err = cl.call(ctx, devcloud.CtlJobList, devcloud.CtlRequest{Thing: *thing}, &rep)
	}
	if err != nil {
		return err
	}
	if len(rep.Executions) == 0 {
		fmt.Fprintf(stdout, "no job executions for %s\n", *thing)
	}
	for _, e := range rep.Executions {
		fmt.Fprintln(stdout, execLine(e))
		if verb == "describe" {
			fmt.Fprintf(stdout, "  queued %s, started %s, updated %s, execution %d\n", e.QueuedAt.UTC().Format(time.RFC3339),
				fmtTime(e.StartedAt), e.LastUpdatedAt.UTC().Format(time.RFC3339), e.ExecutionNumber)
			for _, k := range slices.Sorted(maps.Keys(e.StatusDetails)) {
				fmt.Fprintf(stdout, "  %s: %s\n", k, e.StatusDetails[k])
			}
			if len(e.Document) > 0 {
				fmt.Fprintf(stdout, "  document: %s\n", docSummary(e.Document))
			}
		}
	}
	return nil
}

func jobCancel(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, addr, timeout := jobFlags("cancel", stderr)
	jobID := fs.String("job", "", "job ID (required)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: tcu-devcloud job cancel --job JOB_ID [flags]\nmoves every unfinished execution of the job to CANCELED")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *jobID == "" {
		fmt.Fprintln(stderr, "--job is required")
		return exitError(2)
	}
	cl, err := dialCtl(ctx, *addr, *timeout, stderr)
	if err != nil {
		return err
	}
	defer cl.close()
	if err := cl.call(ctx, devcloud.CtlJobCancel, devcloud.CtlRequest{JobID: *jobID}, &devcloud.CtlReply{}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "job %s canceled\n", *jobID)
	return nil
}

// execLine is one execution in one line, reason and detail included.
func execLine(e devcloud.JobExecution) string {
	s := fmt.Sprintf("%s %s %s version %d", e.JobID, e.ThingName, e.Status, e.VersionNumber)
	for _, k := range []string{"version", "step", "reason", "detail"} {
		if v, ok := e.StatusDetails[k]; ok {
			s += fmt.Sprintf(" %s=%q", k, v)
		}
	}
	return s
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// docSummary shows a document without its inline bundle.
func docSummary(raw json.RawMessage) string {
	var d map[string]any
	if json.Unmarshal(raw, &d) != nil {
		return string(raw)
	}
	if s, ok := d["inline"].(string); ok {
		d["inline"] = fmt.Sprintf("(%d base64 characters)", len(s))
	}
	b, _ := json.Marshal(d)
	return string(b)
}

// ctlClient is a plain MQTT connection to the dev cloud's control plane.
type ctlClient struct {
	conn    *uplink.Conn
	timeout time.Duration
	replies chan []byte
	subs    map[string]bool
}

func dialCtl(ctx context.Context, addr string, timeout time.Duration, stderr io.Writer) (*ctlClient, error) {
	cfg := uplink.DefaultConfig()
	cfg.Broker, cfg.AllowPlaintext = "tcp://"+addr, true
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := uplink.DialConn(dctx, cfg, tls.Certificate{}, "tcu-devcloud-job-"+fmt.Sprint(time.Now().UnixNano()), log)
	if err != nil {
		return nil, fmt.Errorf("connect to the dev cloud at %s: %w", addr, err)
	}
	return &ctlClient{conn: conn, timeout: timeout, replies: make(chan []byte, 4), subs: map[string]bool{}}, nil
}

func (c *ctlClient) close() { _ = c.conn.Close() }

// call sends one control request and decodes the reply into rep.
func (c *ctlClient) call(ctx context.Context, op string, req devcloud.CtlRequest, rep *devcloud.CtlReply) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if !c.subs[op] {
		if err := c.conn.Subscribe(ctx, devcloud.CtlReplyTopic(op), func(_ string, b []byte) {
			select {
			case c.replies <- b:
			default:
			}
		}); err != nil {
			return err
		}
		c.subs[op] = true
	}
	body, _ := json.Marshal(req)
	if err := c.conn.Publish(ctx, devcloud.CtlTopic(op), body); err != nil {
		return err
	}
	select {
	case b := <-c.replies:
		if err := json.Unmarshal(b, rep); err != nil {
			return fmt.Errorf("%s: bad reply: %w", op, err)
		}
		if rep.Error != "" {
			return fmt.Errorf("%s: %s", op, rep.Error)
		}
		if op == devcloud.CtlInfo && rep.Info == nil {
			return errors.New("info: empty reply")
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: no answer from the dev cloud within %v", op, c.timeout)
	}
}
