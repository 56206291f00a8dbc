package bundle

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// FetchOptions configure Fetch.
type FetchOptions struct {
	// MaxSize caps the download ([jobs] max_bundle_size); the stream is
	// cut as soon as it is exceeded.
	MaxSize int64
	// Timeout bounds the whole download, resumes included.
	Timeout time.Duration
	// CAFile is an extra PEM CA trusted besides the system roots.
	CAFile string
	// Attempts is how many times a cut transfer is resumed (default 5).
	Attempts int
	// RetryWaitMin/Max bound retryablehttp's wait between retries of a
	// request (defaults 1 s / 30 s).
	RetryWaitMin, RetryWaitMax time.Duration
	Logger                     *slog.Logger
}

// TLSConfig returns the client TLS configuration: the system roots plus
// caFile, if set.
func TLSConfig(caFile string) (*tls.Config, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read [jobs] ca_file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("[jobs] ca_file %s holds no PEM certificate", caFile)
		}
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// Fetch returns the document's bundle bytes: the inline ones, or those
// downloaded from its URL over verified TLS. A transfer cut short is
// resumed with a Range request when the server answered 206 before (else
// restarted); requests are retried by retryablehttp on connection errors
// and 5xx. The size is capped while streaming (too_large); every other
// failure is download_failed. The bytes are not hash-checked here.
func Fetch(ctx context.Context, d *Document, o FetchOptions) ([]byte, error) {
	if d.inline != nil {
		return d.inline, nil
	}
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	if o.RetryWaitMin <= 0 {
		o.RetryWaitMin = time.Second
	}
	if o.RetryWaitMax <= 0 {
		o.RetryWaitMax = 30 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	maxSize := min(o.MaxSize, d.Size)
	if o.MaxSize <= 0 {
		maxSize = d.Size
	}
	tcfg, err := TLSConfig(o.CAFile)
	if err != nil {
		return nil, Fail(ReasonDownloadFailed, "%v", err)
	}
	rc := retryablehttp.NewClient()
	rc.HTTPClient = &http.Client{Transport: &http.Transport{
		TLSClientConfig: tcfg, TLSHandshakeTimeout: 15 * time.Second, ResponseHeaderTimeout: 30 * time.Second,
		DisableKeepAlives: true,
	}}
	rc.RetryMax = 4
	rc.RetryWaitMin, rc.RetryWaitMax = o.RetryWaitMin, o.RetryWaitMax
	rc.Logger = nil
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	var buf bytes.Buffer
	var lastErr error
	for attempt := 0; attempt < o.Attempts; attempt++ {
		if attempt > 0 {
			o.Logger.Info("bundle download cut short, resuming", "have", buf.Len(), "attempt", attempt+1, "err", lastErr)
		}
		done, err := fetchOnce(ctx, rc, d.URL, &buf, maxSize)
		if err == nil && done {
			return buf.Bytes(), nil
		}
		var be *Error
		if errors.As(err, &be) {
			return nil, err // too_large, or a refusal: retrying does not help
		}
		if ctx.Err() != nil {
			return nil, Fail(ReasonDownloadFailed, "download %s: %v (timeout %v): %v", redact(d.URL), ctx.Err(), o.Timeout, err)
		}
		lastErr = err
		select {
		case <-ctx.Done():
		case <-time.After(o.RetryWaitMin):
		}
	}
	return nil, Fail(ReasonDownloadFailed, "download %s: %v", redact(d.URL), lastErr)
}

// fetchOnce requests the rest of the bundle and appends it to buf. It
// returns done once the server's whole body was read.
func fetchOnce(ctx context.Context, rc *retryablehttp.Client, url string, buf *bytes.Buffer, maxSize int64) (bool, error) {
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, Fail(ReasonDownloadFailed, "request: %v", err)
	}
	have := int64(buf.Len())
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	resp, err := rc.Do(req)
	if err != nil {
		return false, err
	}
	defer func() { _ = resp.Body.Close() }()
	switch {
	case resp.StatusCode == http.StatusOK:
		if have > 0 {
			buf.Reset() // no Range support: start over
			have = 0
		}
	case resp.StatusCode == http.StatusPartialContent && have > 0:
		var start int64
		if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-", &start); err != nil || start != have {
			buf.Reset()
			return false, fmt.Errorf("bad Content-Range %q for a resume at %d", resp.Header.Get("Content-Range"), have)
		}
	default:
		return false, Fail(ReasonDownloadFailed, "GET %s: HTTP %s", redact(url), resp.Status)
	}
	if resp.ContentLength > 0 && have+resp.ContentLength > maxSize {
		return false, Fail(ReasonTooLarge, "the server offers %d bytes, more than the cap of %d", have+resp.ContentLength, maxSize)
	}
	n, err := io.Copy(buf, io.LimitReader(resp.Body, maxSize-have+1))
	if int64(buf.Len()) > maxSize {
		return false, Fail(ReasonTooLarge, "the download exceeds the cap of %d bytes", maxSize)
	}
	if err != nil {
		return false, fmt.Errorf("read body after %d bytes: %w", have+n, err)
	}
	return true, nil
}

// redact drops a presigned URL's query (it is a credential).
func redact(u string) string {
	for i := range len(u) {
		if u[i] == '?' {
			return u[:i] + "?…"
		}
	}
	return u
}
