package devcloud_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

func startFiles(t *testing.T) (*devcloud.FileServer, *http.Client) {
	t.Helper()
	dir := t.TempDir()
	f, err := devcloud.NewFileServer(context.Background(), devcloud.FileServerOptions{Dir: dir, Addr: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	pemBytes, err := os.ReadFile(filepath.Join(dir, devcloud.FilesCAFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("CA file holds no certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	t.Cleanup(tr.CloseIdleConnections)
	return f, &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, url, rng string) (int, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// TestFileServer: TLS verified by the written CA, presigned URLs expire
// and cannot be forged, Range requests resume, and each fault knob does
// what it says.
func TestFileServer(t *testing.T) {
	f, c := startFiles(t)
	body := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	name, err := f.Put(body)
	if err != nil {
		t.Fatal(err)
	}
	url, _ := f.Presign(name)
	if code, b, err := get(t, c, url, ""); err != nil || code != 200 || !bytes.Equal(b, body) {
		t.Fatalf("GET: %d %d bytes %v", code, len(b), err)
	}
	if code, b, _ := get(t, c, url, "bytes=1000-"); code != http.StatusPartialContent || !bytes.Equal(b, body[1000:]) {
		t.Fatalf("Range: %d %d bytes", code, len(b))
	}
	for _, bad := range []string{
		strings.Replace(url, "X-Signature=", "X-Signature=0", 1),
		strings.Replace(url, name, strings.Repeat("0", 32)+".tar", 1),
		f.URL() + "/files/" + name,
	} {
		if code, _, _ := get(t, c, bad, ""); code != http.StatusForbidden {
			t.Errorf("forged URL %s: %d, want 403", bad, code)
		}
	}
	expired, _ := f.PresignFor(name, -time.Second)
	if code, _, _ := get(t, c, expired, ""); code != http.StatusForbidden {
		t.Errorf("expired URL: %d, want 403", code)
	}
	missing, _ := f.Presign("nothere.tar")
	if code, _, _ := get(t, c, missing, ""); code != http.StatusNotFound {
		t.Errorf("missing file: %d, want 404", code)
	}

	// Truncated once: the body is cut mid-way, a resumed Range completes it.
	f.SetFaults(devcloud.FileFaults{TruncateOnce: true})
	_, part, err := get(t, c, url, "")
	if err == nil || len(part) == 0 || len(part) >= len(body) || !bytes.Equal(part, body[:len(part)]) {
		t.Fatalf("truncated GET: %d bytes, err %v", len(part), err)
	}
	code, rest, err := get(t, c, url, "bytes="+itoa(len(part))+"-")
	if err != nil || code != http.StatusPartialContent || !bytes.Equal(append(part, rest...), body) {
		t.Fatalf("resume after truncation: %d %v", code, err)
	}
	reqs := f.Requests()
	if last := reqs[len(reqs)-1]; last.Range != "bytes="+itoa(len(part))+"-" || last.Bytes != int64(len(rest)) {
		t.Fatalf("request log: %+v", last)
	}

	f.SetFaults(devcloud.FileFaults{WrongBytes: true})
	if _, b, _ := get(t, c, url, ""); len(b) != len(body) || bytes.Equal(b, body) {
		t.Fatal("wrong-bytes fault served the right bytes")
	}
	f.SetFaults(devcloud.FileFaults{Oversize: 100})
	if _, b, _ := get(t, c, url, ""); len(b) != len(body)+100 {
		t.Fatalf("oversize fault: %d bytes", len(b))
	}
	f.SetFaults(devcloud.FileFaults{BytesPerSecond: 256 * 1024})
	start := time.Now()
	if _, b, _ := get(t, c, url, ""); !bytes.Equal(b, body) {
		t.Fatal("slow fault changed the body")
	}
	if d := time.Since(start); d < 200*time.Millisecond { // 64 KiB at 256 KiB/s is at least 250 ms
		t.Fatalf("slow fault took only %v", d)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestBundle: a directory becomes a tar of tcu-agent.toml and the files
// it references; the document's hash and signature verify per C.1.
func TestBundle(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "dbc"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "tcu-agent.toml"), []byte("version = 1\n[[driver]]\ndbc = \"dbc/vehicle.dbc\"\nname = \"x\"\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "dbc", "vehicle.dbc"), []byte("VERSION \"\"\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "unrelated.txt"), []byte("no"), 0o644))
	b, err := devcloud.BuildBundle(dir)
	must(err)
	var names []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		must(err)
		names = append(names, h.Name)
	}
	if got := strings.Join(names, ","); got != "tcu-agent.toml,dbc/,dbc/vehicle.dbc" {
		t.Fatalf("entries: %s", got)
	}
	must(devcloud.CheckBundle(b))
	tarPath := filepath.Join(dir, "b.tar")
	must(os.WriteFile(tarPath, b, 0o644))
	if again, err := devcloud.BuildBundle(tarPath); err != nil || !bytes.Equal(again, b) {
		t.Fatalf("a tar is not taken as is: %v", err)
	}
	bad, _ := devcloud.TarFiles([]string{"../x"}, map[string][]byte{"../x": nil})
	if devcloud.CheckBundle(bad) == nil {
		t.Fatal("a bundle escaping its directory passed")
	}

	key, err := devcloud.LoadOrCreateFleetKey(dir)
	must(err)
	again, err := devcloud.LoadOrCreateFleetKey(dir)
	must(err)
	if !key.Equal(again) {
		t.Fatal("the fleet key changed on reload")
	}
	pubText, err := os.ReadFile(filepath.Join(dir, devcloud.FleetPubFile))
	must(err)
	pub, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(pubText)))
	must(err)
	d, err := devcloud.NewDocument(key, "2026-12-07.1", b)
	must(err)
	sum := sha256.Sum256(b)
	sig, _ := base64.StdEncoding.DecodeString(d.Signature)
	msg := "tcu.config.v1\n2026-12-07.1\n" + hex.EncodeToString(sum[:])
	if d.SHA256 != hex.EncodeToString(sum[:]) || d.Size != int64(len(b)) || !ed25519.Verify(pub, []byte(msg), sig) {
		t.Fatalf("document does not verify: %+v", d)
	}
	doc, ok := devcloud.InlineDocument(d, b)
	var back devcloud.Document
	must(json.Unmarshal(doc, &back))
	if inl, _ := base64.StdEncoding.DecodeString(back.Inline); !ok || !bytes.Equal(inl, b) || back.URL != "" {
		t.Fatal("inline document does not carry the bundle")
	}
	if _, ok := devcloud.InlineDocument(d, make([]byte, 30*1024)); ok {
		t.Fatal("a 40 KB document counted as inline")
	}
}

// TestPresignedDocument: a job document's placeholder becomes a fresh
// presigned URL at delivery.
func TestPresignedDocument(t *testing.T) {
	c := jobsCloud(t, 0)
	f, hc := startFiles(t)
	c.ServeJobs(t.TempDir(), f, "")
	name, _ := f.Put([]byte("bundle"))
	doc := `{"type":"tcu.config.v1","url":"` + devcloud.PresignedURLPlaceholder(name) + `"}`
	if err := c.Jobs().Create(devcloud.JobSpec{ID: "j", Things: []string{"T1"}, Document: []byte(doc)}); err != nil {
		t.Fatal(err)
	}
	d := newDevice(t, c, "T1", "T1")
	e := exec(d.mustAccept("start-next", `{}`))
	url, _ := e["jobDocument"].(map[string]any)["url"].(string)
	if code, b, _ := get(t, hc, url, ""); code != 200 || string(b) != "bundle" {
		t.Fatalf("GET %s: %d %q", url, code, b)
	}
}
