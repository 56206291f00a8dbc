package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

func jobsDevCloud(t *testing.T) (*devcloud.Cloud, string) {
	t.Helper()
	cloud, err := devcloud.New(devcloud.Options{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx := context.Background()
	line, stop, err := serveJobs(ctx, cloud, dir, "", "127.0.0.1:0", time.Minute, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(line, dir) || !strings.Contains(line, "files https://") {
		t.Fatalf("jobs line: %s", line)
	}
	t.Cleanup(stop)
	if err := cloud.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cloud.Close() })
	return cloud, dir
}

func writeBundleDir(t *testing.T, dbcSize int) string {
	t.Helper()
	d := t.TempDir()
	if err := os.WriteFile(filepath.Join(d, "tcu-agent.toml"), []byte("version = 1\n[[driver]]\nname = \"body\"\ndbc = \"vehicle.dbc\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dbc := bytes.Repeat([]byte("BO_ 1 X: 8 Vector__XXX\n"), dbcSize/23+1)
	if err := os.WriteFile(filepath.Join(d, "vehicle.dbc"), dbc, 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, nil, &out, &errb)
	return code, out.String(), errb.String()
}

// TestJobPush: push builds, signs and queues; small bundles go inline,
// large ones by presigned URL from the file server; list and describe
// show the execution and its statusDetails.
func TestJobPush(t *testing.T) {
	cloud, dir := jobsDevCloud(t)
	pubText, err := os.ReadFile(filepath.Join(dir, devcloud.FleetPubFile))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(string(pubText)))

	code, out, errOut := runCLI(t, "job", "push", writeBundleDir(t, 1000), "--thing", "T1", "--addr", cloud.Addr(), "--version", "v1", "--job-id", "small")
	if code != 0 || !strings.Contains(out, "job small queued for T1: version v1") || !strings.Contains(out, "inline") {
		t.Fatalf("push small: %d %q %q", code, out, errOut)
	}
	x, ok := cloud.Jobs().Execution("T1", "small")
	if !ok || x.Status != devcloud.JobQueued {
		t.Fatalf("small job: %+v", x)
	}
	var d devcloud.Document
	if err := json.Unmarshal(x.Document, &d); err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.StdEncoding.DecodeString(d.Signature)
	if d.Type != "tcu.config.v1" || d.Inline == "" || d.URL != "" || !ed25519.Verify(pub, devcloud.SignedMessage("v1", d.SHA256), sig) {
		t.Fatalf("small document: %+v", d)
	}

	// Flags before the bundle, a bundle too large to inline.
	code, out, errOut = runCLI(t, "job", "push", "--thing", "T1", "--addr", cloud.Addr(), "--job-id", "large", writeBundleDir(t, 40*1024))
	if code != 0 || !strings.Contains(out, "url https://") {
		t.Fatalf("push large: %d %q %q", code, out, errOut)
	}
	dev := jobsDevice(t, cloud.Addr(), "T1")
	x, _ = cloud.Jobs().Execution("T1", "large")
	if !strings.Contains(string(x.Document), "${devcloud:presigned-url:") {
		t.Fatalf("large document: %s", x.Document)
	}

	// A device gets a URL it can download with the dev cloud's CA.
	doc := describeDoc(t, dev, "large")
	var ld devcloud.Document
	if err := json.Unmarshal(doc, &ld); err != nil || !strings.HasPrefix(ld.URL, "https://127.0.0.1:") {
		t.Fatalf("delivered document: %s", doc)
	}
	body := download(t, filepath.Join(dir, devcloud.FilesCAFile), ld.URL)
	if int64(len(body)) != ld.Size {
		t.Fatalf("downloaded %d bytes, document says %d", len(body), ld.Size)
	}

	// Signed with another key.
	other := filepath.Join(t.TempDir(), "other.pem")
	_, k, _ := ed25519.GenerateKey(nil)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	_ = os.WriteFile(other, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	if code, out, _ := runCLI(t, "job", "push", writeBundleDir(t, 10), "--thing", "T2", "--addr", cloud.Addr(), "--key", other); code != 0 || !strings.Contains(out, devcloud.PublicKeyBase64(k)) {
		t.Fatalf("push with --key: %d %q", code, out)
	}

	dev.update(t, "small", `{"status":"FAILED","statusDetails":{"reason":"invalid_config","detail":"tcu-agent.toml:3: bad"}}`)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if x, _ := cloud.Jobs().Execution("T1", "small"); x.Status == devcloud.JobFailed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the device's update was not applied")
		}
	}
	code, out, _ = runCLI(t, "job", "list", "--thing", "T1", "--addr", cloud.Addr())
	if code != 0 || !strings.Contains(out, `small T1 FAILED version 2 reason="invalid_config"`) || !strings.Contains(out, "large T1 QUEUED") {
		t.Fatalf("list: %d %q", code, out)
	}
	code, out, _ = runCLI(t, "job", "describe", "--thing", "T1", "--job", "small", "--addr", cloud.Addr())
	if code != 0 || !strings.Contains(out, "detail: tcu-agent.toml:3: bad") || !strings.Contains(out, `"type":"tcu.config.v1"`) {
		t.Fatalf("describe: %d %q", code, out)
	}
	if code, _, errOut := runCLI(t, "job", "describe", "--thing", "T1", "--job", "nope", "--addr", cloud.Addr()); code != 1 || !strings.Contains(errOut, "no job execution") {
		t.Fatalf("describe unknown: %d %q", code, errOut)
	}

	// --wait ends with the execution's final status.
	go func() { // ends after one update or when the test's connection closes
		time.Sleep(100 * time.Millisecond)
		dev.update(t, "w", `{"status":"SUCCEEDED"}`)
	}()
	code, out, _ = runCLI(t, "job", "push", writeBundleDir(t, 10), "--thing", "T1", "--addr", cloud.Addr(), "--job-id", "w", "--wait", "20s")
	if code != 0 || !strings.Contains(out, "w T1 SUCCEEDED") {
		t.Fatalf("push --wait: %d %q", code, out)
	}
	if code, _, _ := runCLI(t, "job", "push", writeBundleDir(t, 10), "--thing", "T1", "--addr", cloud.Addr(), "--job-id", "w"); code != 1 {
		t.Fatal("a job ID was reused")
	}
}

// jobsDev is a thing speaking the Jobs API over uplink.Conn.
type jobsDev struct {
	conn    *uplink.Conn
	thing   string
	replies chan []byte
}

func jobsDevice(t *testing.T, addr, thing string) *jobsDev {
	t.Helper()
	cfg := uplink.DefaultConfig()
	cfg.Broker, cfg.AllowPlaintext = "tcp://"+addr, true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := uplink.DialConn(ctx, cfg, tls.Certificate{}, thing, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	d := &jobsDev{conn: conn, thing: thing, replies: make(chan []byte, 16)}
	if err := conn.Subscribe(ctx, "$aws/things/"+thing+"/jobs/+/get/accepted", func(_ string, b []byte) { d.replies <- b }); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *jobsDev) update(t *testing.T, jobID, body string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.conn.Publish(ctx, "$aws/things/"+d.thing+"/jobs/"+jobID+"/update", []byte(body)); err != nil {
		t.Error(err)
	}
}

func describeDoc(t *testing.T, d *jobsDev, jobID string) json.RawMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.conn.Publish(ctx, "$aws/things/"+d.thing+"/jobs/"+jobID+"/get", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-d.replies:
		var v struct {
			Execution struct {
				JobDocument json.RawMessage `json:"jobDocument"`
			} `json:"execution"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		return v.Execution.JobDocument
	case <-ctx.Done():
		t.Fatal("no describe reply")
		return nil
	}
}

func download(t *testing.T, caFile, url string) []byte {
	t.Helper()
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return b
}
