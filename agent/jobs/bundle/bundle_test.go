package bundle_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/jobs/bundle"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	seed := sha256.Sum256([]byte("bundle test key"))
	k := ed25519.NewKeyFromSeed(seed[:])
	return k.Public().(ed25519.PublicKey), k
}

func doc(t testing.TB, key ed25519.PrivateKey, data []byte, url string) []byte {
	t.Helper()
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	d := map[string]any{"type": bundle.Type, "version": "2026-12-07.1", "sha256": h,
		"signature": bundle.Sign(key, "2026-12-07.1", h), "size": len(data)}
	if url == "" {
		d["inline"] = base64.StdEncoding.EncodeToString(data)
	} else {
		d["url"] = url
	}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sampleTar(t testing.TB) []byte {
	t.Helper()
	b, err := bundle.Build([]string{"tcu-agent.toml", "dbc/vehicle.dbc"},
		map[string][]byte{"tcu-agent.toml": []byte("version = 1\n"), "dbc/vehicle.dbc": []byte("VERSION \"\"\n")})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseDocument(t *testing.T) {
	t.Parallel()
	pub, priv := testKey(t)
	_, other, _ := ed25519.GenerateKey(nil)
	data := sampleTar(t)
	good := doc(t, priv, data, "")
	mod := func(f func(m map[string]any)) []byte {
		var m map[string]any
		_ = json.Unmarshal(good, &m)
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	for _, tc := range []struct {
		name, reason string
		raw          []byte
		max          int64
	}{
		{"good", "", good, 1 << 20},
		{"url", "", doc(t, priv, data, "https://files.example/b.tar?sig=x"), 1 << 20},
		{"command passthrough", bundle.ReasonUnsupportedType, []byte(`{"type":"tcu.command","name":"door.unlock"}`), 1 << 20},
		{"no type", bundle.ReasonUnsupportedType, []byte(`{"operation":"ota"}`), 1 << 20},
		{"not json", bundle.ReasonInvalidDocument, []byte(`[1`), 1 << 20},
		{"unknown field", bundle.ReasonInvalidDocument, mod(func(m map[string]any) { m["extra"] = 1 }), 1 << 20},
		{"too large", bundle.ReasonTooLarge, good, 100},
		{"both sources", bundle.ReasonInvalidDocument, mod(func(m map[string]any) { m["url"] = "https://x/y" }), 1 << 20},
		{"http url", bundle.ReasonInvalidDocument, doc(t, priv, data, "http://files.example/b.tar"), 1 << 20},
		{"upper hex", bundle.ReasonInvalidDocument, mod(func(m map[string]any) { m["sha256"] = strings.ToUpper(m["sha256"].(string)) }), 1 << 20},
		{"long version", bundle.ReasonInvalidDocument, mod(func(m map[string]any) { m["version"] = strings.Repeat("v", 65) }), 1 << 20},
		{"garbled signature", bundle.ReasonBadSignature, mod(func(m map[string]any) { m["signature"] = "AAAA" }), 1 << 20},
		{"size differs from inline", bundle.ReasonBadHash, mod(func(m map[string]any) { m["size"] = 3 }), 1 << 20},
		{"oversize document", bundle.ReasonInvalidDocument, mod(func(m map[string]any) { m["url"], m["inline"] = "https://x/"+strings.Repeat("a", 33<<10), nil }), 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := bundle.ParseDocument(tc.raw, tc.max)
			if got := bundle.ReasonOf(err, ""); got != tc.reason {
				t.Fatalf("reason %q (%v), want %q", got, err, tc.reason)
			}
			if err != nil {
				return
			}
			if err := d.VerifySignature([]ed25519.PublicKey{pub}); err != nil {
				t.Errorf("good signature: %v", err)
			}
			if err := d.VerifySignature(nil); bundle.ReasonOf(err, "") != bundle.ReasonBadSignature {
				t.Errorf("no keys: %v, want bad_signature", err)
			}
			if err := d.VerifySignature([]ed25519.PublicKey{other.Public().(ed25519.PublicKey)}); bundle.ReasonOf(err, "") != bundle.ReasonBadSignature {
				t.Errorf("other key: %v, want bad_signature", err)
			}
			if err := d.CheckBytes(data); err != nil {
				t.Errorf("CheckBytes: %v", err)
			}
			bad := bytes.Clone(data)
			bad[0] ^= 1
			if err := d.CheckBytes(bad); bundle.ReasonOf(err, "") != bundle.ReasonBadHash {
				t.Errorf("tampered: %v, want bad_hash", err)
			}
		})
	}
}

func rawTar(t testing.TB, hs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hs {
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = 1
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			_, _ = tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	_ = tw.Close()
	return buf.Bytes()
}

func TestParseTar(t *testing.T) {
	t.Parallel()
	cfg := &tar.Header{Name: "tcu-agent.toml", Typeflag: tar.TypeReg}
	many := []*tar.Header{cfg}
	for i := range 64 {
		many = append(many, &tar.Header{Name: "f" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Typeflag: tar.TypeReg})
	}
	for _, tc := range []struct {
		name, reason string
		data         []byte
	}{
		{"good", "", sampleTar(t)},
		{"dir entries", "", rawTar(t, &tar.Header{Name: "dbc/", Typeflag: tar.TypeDir, Mode: 0o755}, &tar.Header{Name: "dbc/a.dbc", Typeflag: tar.TypeReg}, cfg)},
		{"dotdot", bundle.ReasonInvalidConfig, rawTar(t, cfg, &tar.Header{Name: "../evil", Typeflag: tar.TypeReg})},
		{"inner dotdot", bundle.ReasonInvalidConfig, rawTar(t, cfg, &tar.Header{Name: "dbc/../../evil", Typeflag: tar.TypeReg})},
		{"absolute", bundle.ReasonInvalidConfig, rawTar(t, cfg, &tar.Header{Name: "/etc/passwd", Typeflag: tar.TypeReg})},
		{"symlink", bundle.ReasonInvalidConfig, rawTar(t, cfg, &tar.Header{Name: "link", Linkname: "/etc/passwd", Typeflag: tar.TypeSymlink})},
		{"hardlink", bundle.ReasonInvalidConfig, rawTar(t, cfg, &tar.Header{Name: "link", Linkname: "tcu-agent.toml", Typeflag: tar.TypeLink})},
		{"device", bundle.ReasonInvalidConfig, rawTar(t, cfg, &tar.Header{Name: "dev", Typeflag: tar.TypeChar})},
		{"twice", bundle.ReasonInvalidConfig, rawTar(t, cfg, cfg)},
		{"file then under it", bundle.ReasonInvalidConfig, rawTar(t, cfg, &tar.Header{Name: "a", Typeflag: tar.TypeReg}, &tar.Header{Name: "a/b", Typeflag: tar.TypeReg})},
		{"no config", bundle.ReasonInvalidConfig, rawTar(t, &tar.Header{Name: "x.dbc", Typeflag: tar.TypeReg})},
		{"too many", bundle.ReasonInvalidConfig, rawTar(t, many...)},
		{"too big", bundle.ReasonTooLarge, rawTar(t, cfg, &tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: 2000})},
		{"garbage", bundle.ReasonInvalidConfig, []byte(strings.Repeat("garbage!", 100))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			es, err := bundle.Parse(tc.data, 1000)
			if got := bundle.ReasonOf(err, ""); got != tc.reason {
				t.Fatalf("reason %q (%v), want %q", got, err, tc.reason)
			}
			if err != nil {
				return
			}
			dir := filepath.Join(t.TempDir(), "slot")
			if err := bundle.Write(dir, es); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, "tcu-agent.toml")); err != nil {
				t.Error(err)
			}
		})
	}
}

// server serves data over TLS with Range support; cutAt > 0 makes the
// first full response stop after cutAt bytes.
type server struct {
	*httptest.Server
	data    []byte
	cutAt   int
	cut     atomic.Bool
	noRange bool
	lieLen  bool // no Content-Length, body larger than the document says
	mu      sync.Mutex
	ranges  []string
	caFile  string
}

func newServer(t *testing.T, data []byte) *server {
	s := &server{data: data}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		s.mu.Unlock()
		if s.lieLen {
			w.Header().Set("Content-Type", "application/x-tar")
			w.WriteHeader(http.StatusOK)
			for range 100 {
				_, _ = w.Write(bytes.Repeat([]byte("z"), 1024))
			}
			return
		}
		if s.cutAt > 0 && !s.cut.Swap(true) {
			w.Header().Set("Content-Length", itoa(len(s.data)))
			w.Header().Set("Accept-Ranges", "bytes")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(s.data[:s.cutAt])
			return // short body: the client sees an unexpected EOF
		}
		if s.noRange {
			r.Header.Del("Range")
		}
		http.ServeContent(w, r, "b.tar", time.Time{}, bytes.NewReader(s.data))
	}))
	t.Cleanup(s.Close)
	s.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(s.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestFetch(t *testing.T) {
	t.Parallel()
	_, priv := testKey(t)
	data := bytes.Repeat(sampleTar(t), 8)
	for _, tc := range []struct {
		name, reason string
		setup        func(s *server)
		noCA         bool
		path         string
		wantRanges   []string
	}{
		{name: "plain", wantRanges: []string{""}},
		{name: "resumed with Range", setup: func(s *server) { s.cutAt = 1000 }, wantRanges: []string{"", "bytes=1000-"}},
		{name: "restarted without Range", setup: func(s *server) { s.cutAt = 1000; s.noRange = true }, wantRanges: []string{"", "bytes=1000-"}},
		{name: "untrusted server", noCA: true, reason: bundle.ReasonDownloadFailed},
		{name: "not found", path: "/missing", setup: func(s *server) {
			s.Config.Handler = http.NotFoundHandler()
		}, reason: bundle.ReasonDownloadFailed},
		{name: "oversize stream", setup: func(s *server) { s.lieLen = true }, reason: bundle.ReasonTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, data)
			if tc.setup != nil {
				tc.setup(s)
			}
			d, err := bundle.ParseDocument(doc(t, priv, data, s.URL+"/b.tar"+tc.path), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			o := bundle.FetchOptions{MaxSize: 1 << 20, Timeout: 20 * time.Second, CAFile: s.caFile,
				RetryWaitMin: time.Millisecond, RetryWaitMax: 5 * time.Millisecond}
			if tc.noCA {
				o.CAFile = ""
			}
			got, err := bundle.Fetch(context.Background(), d, o)
			if r := bundle.ReasonOf(err, ""); r != tc.reason {
				t.Fatalf("reason %q (%v), want %q", r, err, tc.reason)
			}
			if err != nil {
				return
			}
			if err := d.CheckBytes(got); err != nil {
				t.Error(err)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if strings.Join(s.ranges, ",") != strings.Join(tc.wantRanges, ",") {
				t.Errorf("requests with Range %q, want %q", s.ranges, tc.wantRanges)
			}
		})
	}
}

func TestFetchTimeout(t *testing.T) {
	t.Parallel()
	_, priv := testKey(t)
	block := make(chan struct{})
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer s.Close()
	defer close(block)
	data := sampleTar(t)
	d, err := bundle.ParseDocument(doc(t, priv, data, s.URL+"/b.tar"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	_ = os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o600)
	_, err = bundle.Fetch(context.Background(), d, bundle.FetchOptions{MaxSize: 1 << 20, Timeout: 300 * time.Millisecond, CAFile: ca, RetryWaitMin: time.Millisecond})
	if bundle.ReasonOf(err, "") != bundle.ReasonDownloadFailed || !strings.Contains(err.Error(), "deadline") {
		t.Errorf("err %v, want download_failed after the deadline", err)
	}
	var be *bundle.Error
	if !errors.As(err, &be) {
		t.Error("not a *bundle.Error")
	}
}

func FuzzParseDocument(f *testing.F) {
	_, priv := testKey(f)
	f.Add(doc(f, priv, []byte("abc"), ""))
	f.Add(doc(f, priv, []byte("abc"), "https://h/x"))
	f.Add([]byte(`{"type":"tcu.config.v1","version":"1","size":-1}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		d, err := bundle.ParseDocument(raw, 1<<20)
		if err != nil {
			if bundle.ReasonOf(err, "") == "" {
				t.Fatalf("error without reason: %v", err)
			}
			return
		}
		if d.Size <= 0 || d.Size > 1<<20 || len(d.SHA256) != 64 {
			t.Fatalf("accepted bad document %+v", d)
		}
	})
}

func FuzzParseTar(f *testing.F) {
	f.Add(sampleTar(f))
	f.Add(rawTar(f, &tar.Header{Name: "../x", Typeflag: tar.TypeReg}))
	f.Fuzz(func(t *testing.T, data []byte) {
		es, err := bundle.Parse(data, 1<<16)
		if err != nil {
			return
		}
		for _, e := range es {
			if strings.HasPrefix(e.Name, "/") || strings.Contains("/"+e.Name+"/", "/../") || e.Name == "." {
				t.Fatalf("unsafe name accepted: %q", e.Name)
			}
		}
		// (Write fsyncs: too slow to run per input; containment is what
		// it relies on.)
		for _, e := range es {
			p := filepath.Join("/slot", filepath.FromSlash(e.Name))
			if rel, err := filepath.Rel("/slot", p); err != nil || rel == "." || strings.HasPrefix(rel, "..") {
				t.Fatalf("entry %q escapes the slot (%s)", e.Name, p)
			}
		}
	})
}
