package fleetprov

import (
	"bytes"
	"crypto/subtle"
	"crypto/x509"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tcu-agent/tcu-agent/provisioning/est"
)

// estState holds the EST 202 knob.
type estState struct {
	pending    int           // how many more enroll requests get 202
	retryAfter time.Duration // Retry-After sent with 202
}

// SetESTPending makes the next n enroll/re-enroll requests answer
// 202 Accepted with Retry-After (whole seconds, at least 1).
func (s *Server) SetESTPending(n int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.est = estState{pending: n, retryAfter: retryAfter}
}

// ESTHandler serves /.well-known/est/[<label>/]{cacerts,simpleenroll,
// simplereenroll}. Serve it over TLS with tls.RequestClientCert (the
// handler verifies client certificates itself) so both claim-certificate
// and basic-auth bootstrap work.
func (s *Server) ESTHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/.well-known/est/") {
			http.NotFound(w, r)
			return
		}
		switch op := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]; {
		case op == "cacerts" && r.Method == http.MethodGet:
			s.writeCerts(w, []*x509.Certificate{s.opts.CACert})
		case (op == "simpleenroll" || op == "simplereenroll") && r.Method == http.MethodPost:
			s.estEnroll(w, r, op == "simplereenroll")
		default:
			http.Error(w, "unsupported EST operation", http.StatusNotFound)
		}
	})
}

func (s *Server) writeCerts(w http.ResponseWriter, certs []*x509.Certificate) {
	der, err := est.MarshalCertsOnly(certs)
	if err != nil {
		http.Error(w, "encode certificates", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/pkcs7-mime; smime-type=certs-only")
	w.Header().Set("Content-Transfer-Encoding", "base64")
	_, _ = w.Write(est.EncodeBase64(der))
}

// estEnroll handles /simpleenroll and /simplereenroll.
func (s *Server) estEnroll(w http.ResponseWriter, r *http.Request, re bool) {
	peer := s.verifiedPeer(r, re)
	if peer == nil && (re || !s.basicOK(r)) {
		w.Header().Set("WWW-Authenticate", `Basic realm="est"`)
		http.Error(w, "authentication required", http.StatusUnauthorized)
		return
	}
	if s.takePending(w) {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		http.Error(w, "read request", http.StatusBadRequest)
		return
	}
	der, err := est.DecodeBase64(body)
	if err != nil {
		http.Error(w, "body is not base64", http.StatusBadRequest)
		return
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil || csr.CheckSignature() != nil {
		http.Error(w, "malformed certificate request", http.StatusBadRequest)
		return
	}
	if re && !bytes.Equal(csr.RawSubject, peer.RawSubject) {
		http.Error(w, "re-enrollment subject differs from the current certificate", http.StatusBadRequest)
		return
	}
	certDER, err := s.issue(csr.PublicKey, csr.Subject)
	if err != nil {
		http.Error(w, "issue certificate", http.StatusInternalServerError)
		return
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		http.Error(w, "issue certificate", http.StatusInternalServerError)
		return
	}
	if s.opts.Registry != nil {
		s.opts.Registry.ActivateThing(certDER, csr.Subject.CommonName)
	}
	s.log.Info("est certificate issued", "thing", csr.Subject.CommonName, "reenroll", re)
	s.writeCerts(w, []*x509.Certificate{cert})
}

// takePending answers 202 when the pending knob is armed.
func (s *Server) takePending(w http.ResponseWriter) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.est.pending <= 0 {
		return false
	}
	s.est.pending--
	secs := max(int(s.est.retryAfter.Round(time.Second)/time.Second), 1)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	w.WriteHeader(http.StatusAccepted)
	return true
}

// verifiedPeer returns the TLS client certificate if it chains to the
// accepted CAs (only CACert when re-enrolling).
func (s *Server) verifiedPeer(r *http.Request, re bool) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	pool := s.opts.ESTClientCAs
	if pool == nil || re {
		pool = x509.NewCertPool()
		pool.AddCert(s.opts.CACert)
	}
	leaf := r.TLS.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: s.opts.Now()})
	if err != nil {
		return nil
	}
	return leaf
}

func (s *Server) basicOK(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	want, known := s.opts.ESTUsers[user]
	return known && subtle.ConstantTimeCompare([]byte(want), []byte(pass)) == 1
}
