package devcloud

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// File names inside the dev cloud directory used by the file server.
const (
	FilesCAFile = "files-ca.pem" // the file server's CA certificate, for [jobs] ca_file
	filesCADir  = "files-ca"     // the file server's CA (certificate and key)
	filesDir    = "files"        // the files served
)

var fileNameRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// FileServerOptions configure a FileServer.
type FileServerOptions struct {
	// Dir is the dev cloud directory: the CA goes to Dir/files-ca.pem,
	// files are served from Dir/files/. Created if absent.
	Dir string
	// Addr is the HTTPS listen address ("127.0.0.1:0" picks a port).
	Addr string
	// Validity is how long a presigned URL stays valid (default 1h, as
	// AWS's default expiresInSec).
	Validity time.Duration
	// Logger is required.
	Logger *slog.Logger
}

// FileFaults are the file server's fault knobs; the zero value serves
// files faithfully.
type FileFaults struct {
	// BytesPerSecond throttles each response body (0: unthrottled).
	BytesPerSecond int
	// TruncateOnce cuts the next response carrying a body after half of
	// it, closing the connection; later responses are whole.
	TruncateOnce bool
	// WrongBytes serves the file with one byte in its middle changed.
	WrongBytes bool
	// Oversize appends that many bytes to every file served.
	Oversize int64
}

// FileRequest is one request the file server answered.
type FileRequest struct {
	Name   string
	Range  string // the Range header, "" if none
	Status int
	Bytes  int64 // body bytes written
}

// FileServer is the dev cloud's HTTPS file server: its own CA, files at
// presigned-like URLs (an HMAC token and an expiry; 403 after expiry or
// with a wrong token), Range requests, fault knobs.
type FileServer struct {
	opts   FileServerOptions
	ca     *CA
	secret []byte
	url    string
	srv    *http.Server
	done   chan struct{}

	mu       sync.Mutex
	faults   FileFaults    // guarded by mu
	requests []FileRequest // guarded by mu
}

// NewFileServer creates (or loads) the CA, writes its certificate to
// Dir/files-ca.pem and serves HTTPS on Addr until Close.
func NewFileServer(ctx context.Context, opts FileServerOptions) (*FileServer, error) {
	if opts.Logger == nil || opts.Dir == "" || opts.Addr == "" {
		return nil, errors.New("file server: Dir, Addr and Logger are required")
	}
	if opts.Validity <= 0 {
		opts.Validity = time.Hour
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, filesDir), 0o700); err != nil {
		return nil, fmt.Errorf("file server: %w", err)
	}
	ca, err := LoadOrCreateCA(filepath.Join(opts.Dir, filesCADir))
	if err != nil {
		return nil, fmt.Errorf("file server: %w", err)
	}
	if err := writeFile(filepath.Join(opts.Dir, FilesCAFile), ca.CertPEM, 0o644); err != nil {
		return nil, fmt.Errorf("file server: %w", err)
	}
	id, err := ca.ServerIdentity()
	if err != nil {
		return nil, fmt.Errorf("file server: %w", err)
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("file server: listen %s: %w", opts.Addr, err)
	}
	f := &FileServer{opts: opts, ca: ca, secret: secret, url: "https://" + ln.Addr().String(), done: make(chan struct{})}
	f.srv = &http.Server{Handler: http.HandlerFunc(f.serve), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0),
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{id.Certificate},
			NextProtos: []string{"http/1.1"}}}
	go func() {
		defer close(f.done)
		_ = f.srv.ServeTLS(ln, "", "")
	}()
	return f, nil
}

// URL is the server's base URL (https://host:port).
func (f *FileServer) URL() string { return f.url }

// CAFile is the path of the CA certificate (PEM).
func (f *FileServer) CAFile() string { return filepath.Join(f.opts.Dir, FilesCAFile) }

// CA returns the file server's CA.
func (f *FileServer) CA() *CA { return f.ca }

// Close stops the server.
func (f *FileServer) Close() error {
	err := f.srv.Close()
	<-f.done
	return err
}

// Put stores b as a new file with an unguessable name and returns it.
func (f *FileServer) Put(b []byte) (string, error) {
	var r [16]byte
	_, _ = rand.Read(r[:])
	name := hex.EncodeToString(r[:]) + ".tar"
	if err := PutFile(f.opts.Dir, name, b); err != nil {
		return "", err
	}
	return name, nil
}

// PutFile writes a file to serve into the dev cloud directory dir (used
// by the CLI on the machine of a running dev cloud).
func PutFile(dir, name string, b []byte) error {
	if !fileNameRe.MatchString(name) {
		return fmt.Errorf("put file: invalid name %q", name)
	}
	if err := os.MkdirAll(filepath.Join(dir, filesDir), 0o700); err != nil {
		return fmt.Errorf("put file: %w", err)
	}
	tmp := filepath.Join(dir, filesDir, "."+name+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("put file: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, filesDir, name)); err != nil {
		return fmt.Errorf("put file: %w", err)
	}
	return nil
}

// Presign returns a URL of file name valid for the configured validity.
func (f *FileServer) Presign(name string) (string, error) {
	return f.PresignFor(name, f.opts.Validity)
}

// PresignFor returns a URL of file name valid for d.
func (f *FileServer) PresignFor(name string, d time.Duration) (string, error) {
	if !fileNameRe.MatchString(name) {
		return "", fmt.Errorf("presign: invalid name %q", name)
	}
	exp := time.Now().Add(d).Unix()
	return fmt.Sprintf("%s/files/%s?X-Expires=%d&X-Signature=%s", f.url, name, exp, f.sign(name, exp)), nil
}

func (f *FileServer) sign(name string, exp int64) string {
	m := hmac.New(sha256.New, f.secret)
	fmt.Fprintf(m, "%s\n%d", name, exp)
	return hex.EncodeToString(m.Sum(nil))
}

// SetFaults replaces the fault knobs.
func (f *FileServer) SetFaults(ff FileFaults) {
	f.mu.Lock()
	f.faults = ff
	f.mu.Unlock()
}

// Requests returns every request answered so far, in order.
func (f *FileServer) Requests() []FileRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]FileRequest(nil), f.requests...)
}

func (f *FileServer) serve(w http.ResponseWriter, r *http.Request) {
	name, _ := strings.CutPrefix(r.URL.Path, "/files/")
	rw := &faultWriter{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		f.mu.Lock()
		f.requests = append(f.requests, FileRequest{Name: name, Range: r.Header.Get("Range"), Status: rw.status, Bytes: rw.n})
		f.mu.Unlock()
	}()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(rw, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	exp, err := strconv.ParseInt(q.Get("X-Expires"), 10, 64)
	if !fileNameRe.MatchString(name) || err != nil ||
		!hmac.Equal([]byte(q.Get("X-Signature")), []byte(f.sign(name, exp))) {
		http.Error(rw, "AccessDenied: bad signature", http.StatusForbidden)
		return
	}
	if time.Now().Unix() > exp {
		http.Error(rw, "AccessDenied: Request has expired", http.StatusForbidden)
		return
	}
	b, err := os.ReadFile(filepath.Join(f.opts.Dir, filesDir, name))
	if err != nil {
		http.Error(rw, "NoSuchKey", http.StatusNotFound)
		return
	}
	f.mu.Lock()
	ff := f.faults
	if ff.TruncateOnce && r.Method == http.MethodGet {
		f.faults.TruncateOnce = false
	}
	f.mu.Unlock()
	if ff.WrongBytes && len(b) > 0 {
		b = bytes.Clone(b)
		b[len(b)/2] ^= 0xff
	}
	if ff.Oversize > 0 {
		b = append(b, bytes.Repeat([]byte{0}, int(ff.Oversize))...)
	}
	rw.rate = ff.BytesPerSecond
	rw.cutAt = -1
	if ff.TruncateOnce && r.Method == http.MethodGet {
		rw.cutAt = int64(len(b)) / 2 // of this response's body at most
	}
	fi, _ := os.Stat(filepath.Join(f.opts.Dir, filesDir, name))
	mod := time.Time{}
	if fi != nil {
		mod = fi.ModTime()
	}
	http.ServeContent(rw, r, name, mod, bytes.NewReader(b))
}

// faultWriter applies the throttle and the truncation to a body and
// counts what it wrote.
type faultWriter struct {
	http.ResponseWriter
	status int
	n      int64
	rate   int   // bytes per second, 0 unthrottled
	cutAt  int64 // abort after this many body bytes; -1 never
}

func (w *faultWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *faultWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p
		if len(chunk) > 4096 {
			chunk = chunk[:4096]
		}
		if w.cutAt >= 0 && w.n+int64(len(chunk)) > w.cutAt {
			chunk = chunk[:w.cutAt-w.n]
			k, _ := w.ResponseWriter.Write(chunk)
			w.n += int64(k)
			if fl, ok := w.ResponseWriter.(http.Flusher); ok {
				fl.Flush()
			}
			panic(http.ErrAbortHandler) // the connection closes mid-body
		}
		k, err := w.ResponseWriter.Write(chunk)
		w.n += int64(k)
		written += k
		if err != nil {
			return written, err
		}
		p = p[len(chunk):]
		if w.rate > 0 {
			if fl, ok := w.ResponseWriter.(http.Flusher); ok {
				fl.Flush()
			}
			time.Sleep(time.Duration(len(chunk)) * time.Second / time.Duration(w.rate))
		}
	}
	return written, nil
}
