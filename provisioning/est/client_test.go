package est

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// script is a scripted EST server: each request to an enroll path takes
// the next status from statuses (200 once exhausted).
type script struct {
	mu       sync.Mutex
	statuses []int
	requests int
	lastAuth string
	lastType string
	cert     *x509.Certificate
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	status := http.StatusOK
	if len(s.statuses) > 0 {
		status, s.statuses = s.statuses[0], s.statuses[1:]
	}
	user, _, _ := r.BasicAuth()
	s.lastAuth, s.lastType = user, r.Header.Get("Content-Type")
	s.mu.Unlock()
	switch status {
	case http.StatusOK:
		der, _ := MarshalCertsOnly([]*x509.Certificate{s.cert})
		w.Header().Set("Content-Type", mimeCertOnly)
		_, _ = w.Write(EncodeBase64(der))
	case http.StatusAccepted:
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(status)
	default:
		http.Error(w, "scripted failure", status)
	}
}

func newScripted(t *testing.T, statuses ...int) (*script, *Client) {
	t.Helper()
	s := &script{statuses: statuses, cert: testCert(t, "issued")}
	srv := httptest.NewTLSServer(s)
	t.Cleanup(srv.Close)
	c, err := New(Options{URL: srv.URL + "/.well-known/est/", HTTPClient: srv.Client(),
		Username: "installer", Password: "pw", MaxPending: 3})
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

func csrDER(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "dev"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestEnrollStatuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		statuses   []int
		wantErr    error
		wantStatus int
		minWait    time.Duration
		requests   int
	}{
		{name: "ok", requests: 1},
		{name: "202 then ok", statuses: []int{202}, minWait: time.Second, requests: 2},
		{name: "503 retried by transport", statuses: []int{503}, requests: 2},
		{name: "400 is final", statuses: []int{400}, wantStatus: 400, requests: 1},
		{name: "pending too long", statuses: []int{202, 202, 202}, wantErr: ErrPending, requests: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, c := newScripted(t, tt.statuses...)
			start := time.Now()
			cert, err := c.Enroll(context.Background(), csrDER(t))
			var se *StatusError
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Enroll = %v, want %v", err, tt.wantErr)
				}
			case tt.wantStatus != 0:
				if !errors.As(err, &se) || se.StatusCode != tt.wantStatus {
					t.Fatalf("Enroll = %v, want status %d", err, tt.wantStatus)
				}
			case err != nil || cert.Subject.CommonName != "issued":
				t.Fatalf("Enroll = %v, %v", cert, err)
			}
			if waited := time.Since(start); waited < tt.minWait {
				t.Errorf("returned after %v, want at least %v (Retry-After)", waited, tt.minWait)
			}
			if s.requests != tt.requests || s.lastAuth != "installer" || s.lastType != mimePKCS10 {
				t.Errorf("requests %d auth %q type %q, want %d installer %s", s.requests, s.lastAuth, s.lastType, tt.requests, mimePKCS10)
			}
		})
	}
}

func TestEnrollHonoursContext(t *testing.T) {
	t.Parallel()
	_, c := newScripted(t, 202, 202)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := c.Enroll(ctx, csrDER(t)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Enroll = %v, want deadline", err)
	}
}

func TestNewRequiresHTTPS(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"http://est.example/.well-known/est", "est.example", "https://"} {
		if _, err := New(Options{URL: u}); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"120", 2 * time.Minute, true},
		{" 5 ", 5 * time.Second, true},
		{"Sun, 22 Nov 2026 00:01:00 GMT", time.Minute, true},
		{"Sat, 21 Nov 2026 23:00:00 GMT", 0, true},
		{"", 0, false},
		{"-3", 0, false},
		{"soon", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"120", "Sun, 22 Nov 2026 00:01:00 GMT", "", "99999999999"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		if d, ok := ParseRetryAfter(v, now); ok && d < 0 {
			t.Fatalf("negative wait %v", d)
		}
	})
}

// FuzzParseCSRAttrs: a /csrattrs body from the network never panics and
// what parses has one entry per element.
func FuzzParseCSRAttrs(f *testing.F) {
	f.Add([]byte{0x30, 0x00})
	rfc, _ := base64.StdEncoding.DecodeString("MEEGCSqGSIb3DQEJBzASBgcqhkjOPQIBMQcGBSuBBAAiMBYGCSqGSIb3DQEJDjEJBgcrBgEBAQEWBggqhkjOPQQDAw==")
	f.Add(rfc) // RFC 7030 §4.5.2
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseCSRAttrs(b)
		if err == nil && a == nil {
			t.Fatal("nil result without error")
		}
		if err == nil {
			_, _ = a.Curve()
		}
	})
}
