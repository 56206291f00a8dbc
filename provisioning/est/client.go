// Package est is an EST (RFC 7030, RFC 8951) enrollment client over HTTPS
// built on go-retryablehttp, and the certs-only PKCS#7 codec that
// tcu-devcloud's EST server shares with it.
//
// The client implements /cacerts, /simpleenroll and /simplereenroll.
// Bodies are base64 DER in both directions. A 202 Accepted answer is
// honoured by waiting at least its Retry-After and repeating the request.
// TLS (trust anchors and the client certificate used for bootstrap or
// re-enrollment) comes from the http.Client the caller passes in; HTTP
// basic credentials are the alternative bootstrap authentication.
package est

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/tcu-agent/tcu-agent/internal/backoff"
)

// Media types (RFC 7030 §3.2.4).
const (
	mimePKCS10   = "application/pkcs10"
	mimeCertOnly = "application/pkcs7-mime; smime-type=certs-only"
)

// ErrPending reports that the server kept answering 202 Accepted for
// Options.MaxPending rounds.
var ErrPending = errors.New("est enrollment still pending")

// StatusError is a non-success HTTP answer from the EST server.
type StatusError struct {
	Op         string // cacerts, simpleenroll, simplereenroll
	StatusCode int
	Message    string // the server's text, truncated
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("est %s: http %d: %q", e.Op, e.StatusCode, e.Message)
}

// Options configure a Client.
type Options struct {
	// URL is the EST base, e.g. https://est.example/.well-known/est or
	// with a label .../.well-known/est/telematics. It must be https.
	URL string
	// HTTPClient carries the TLS configuration; nil means a default one.
	HTTPClient *http.Client
	// Username and Password, when set, are sent as HTTP basic auth.
	Username, Password string
	Logger             *slog.Logger
	// RetryMax is how often a request is retried on connection errors
	// and 5xx/429 answers (default 3).
	RetryMax int
	// MaxPending is how many 202 rounds are waited out (default 10);
	// MaxRetryAfter caps one wait (default 1h).
	MaxPending    int
	MaxRetryAfter time.Duration
	// Now is the clock for HTTP-date Retry-After values.
	Now func() time.Time
}

// Client talks to one EST server.
type Client struct {
	opts Options
	base string
	http *retryablehttp.Client
}

// New checks opts; it does no I/O.
func New(opts Options) (*Client, error) {
	u, err := url.Parse(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("est url: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("est url %q: want https://host/path", opts.URL)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 3
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 10
	}
	if opts.MaxRetryAfter <= 0 {
		opts.MaxRetryAfter = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	rc := retryablehttp.NewClient()
	if opts.HTTPClient != nil {
		rc.HTTPClient = opts.HTTPClient
	}
	rc.Logger = nil // requests carry credentials in headers; keep the library quiet
	rc.RetryMax = opts.RetryMax
	rc.RetryWaitMin, rc.RetryWaitMax = 200*time.Millisecond, 10*time.Second
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	return &Client{opts: opts, base: strings.TrimSuffix(opts.URL, "/"), http: rc}, nil
}

// CACerts fetches the CA certificates (GET /cacerts).
func (c *Client) CACerts(ctx context.Context) ([]*x509.Certificate, error) {
	body, err := c.do(ctx, "cacerts", http.MethodGet, nil)
	if err != nil {
		return nil, err
	}
	certs, err := ParseCertsOnlyBase64(body)
	if err != nil {
		return nil, fmt.Errorf("est cacerts: %w", err)
	}
	return certs, nil
}

// Enroll sends a DER PKCS#10 request to /simpleenroll and returns the
// issued certificate.
func (c *Client) Enroll(ctx context.Context, csrDER []byte) (*x509.Certificate, error) {
	return c.enroll(ctx, "simpleenroll", csrDER)
}

// Reenroll is Enroll against /simplereenroll; the TLS client certificate
// must be the one being renewed.
func (c *Client) Reenroll(ctx context.Context, csrDER []byte) (*x509.Certificate, error) {
	return c.enroll(ctx, "simplereenroll", csrDER)
}

func (c *Client) enroll(ctx context.Context, op string, csrDER []byte) (*x509.Certificate, error) {
	body, err := c.do(ctx, op, http.MethodPost, EncodeBase64(csrDER))
	if err != nil {
		return nil, err
	}
	certs, err := ParseCertsOnlyBase64(body)
	if err != nil {
		return nil, fmt.Errorf("est %s: %w", op, err)
	}
	return certs[0], nil
}

// do performs op, waiting out 202 answers, and returns the 200 body.
func (c *Client) do(ctx context.Context, op, method string, payload []byte) ([]byte, error) {
	for round := 0; ; round++ {
		status, body, retryAfter, err := c.once(ctx, op, method, payload)
		if err != nil {
			return nil, err
		}
		switch status {
		case http.StatusOK:
			return body, nil
		case http.StatusAccepted:
			if round+1 >= c.opts.MaxPending {
				return nil, fmt.Errorf("est %s: %w after %d rounds", op, ErrPending, round+1)
			}
			wait := min(max(retryAfter, time.Second), c.opts.MaxRetryAfter)
			c.opts.Logger.Info("est enrollment pending", "op", op, "retry_in", wait)
			if err := backoff.Sleep(ctx, wait); err != nil {
				return nil, fmt.Errorf("est %s: %w", op, err)
			}
		default:
			return nil, &StatusError{Op: op, StatusCode: status, Message: truncate(body)}
		}
	}
}

func (c *Client) once(ctx context.Context, op, method string, payload []byte) (int, []byte, time.Duration, error) {
	var rawBody any
	if payload != nil {
		rawBody = payload
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, c.base+"/"+op, rawBody)
	if err != nil {
		return 0, nil, 0, fmt.Errorf("est %s: %w", op, err)
	}
	if payload != nil {
		req.Header.Set("Content-Type", mimePKCS10)
		req.Header.Set("Content-Transfer-Encoding", "base64") // for pre-RFC 8951 servers
	}
	if c.opts.Username != "" {
		req.SetBasicAuth(c.opts.Username, c.opts.Password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, 0, fmt.Errorf("est %s: %w", op, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, nil, 0, fmt.Errorf("est %s: read body: %w", op, err)
	}
	ra, _ := ParseRetryAfter(resp.Header.Get("Retry-After"), c.opts.Now())
	return resp.StatusCode, body, ra, nil
}

// ParseRetryAfter reads a Retry-After value: delay seconds or an HTTP-date.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseUint(v, 10, 31); err == nil {
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

func truncate(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}
