package est_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/provisioning/est"
)

// rfcServer is a small EST server written from RFC 7030 (and RFC 8951),
// not from the client: certs-only responses are built by openssl
// (crl2pkcs7), bodies are base64 with line breaks as in the RFC's
// examples, /simpleenroll takes HTTP basic auth, /simplereenroll the TLS
// client certificate being renewed (the CSR's subject must match it,
// §4.2.2), /csrattrs answers the RFC's own example (§4.5.2) or 404.
type rfcServer struct {
	t       *testing.T
	dir     string
	ca      *x509.Certificate
	caKey   *ecdsa.PrivateKey
	csrattr []byte // DER; nil means 404

	mu       sync.Mutex
	requests []string // "METHOD path content-type"
}

// rfcCSRAttrs is the example response of RFC 7030 §4.5.2: challenge
// password, an EC key on secp384r1, an extension request for the MAC
// address, ecdsa-with-SHA384.
const rfcCSRAttrs = "MEEGCSqGSIb3DQEJBzASBgcqhkjOPQIBMQcGBSuBBAAiMBYGCSqGSIb3DQEJDjEJBgcrBgEBAQEWBggqhkjOPQQDAw=="

func newRFCServer(t *testing.T) (*rfcServer, *httptest.Server) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "RFC 7030 test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	s := &rfcServer{t: t, dir: t.TempDir(), ca: ca, caKey: key}
	s.csrattr, _ = base64.StdEncoding.DecodeString(rfcCSRAttrs)
	hs := httptest.NewUnstartedServer(s)
	hs.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	hs.StartTLS()
	t.Cleanup(hs.Close)
	return s, hs
}

// certsOnly returns the base64 (64-character lines) of a degenerate
// certs-only PKCS#7 made by openssl.
func (s *rfcServer) certsOnly(certs ...*x509.Certificate) ([]byte, error) {
	f, err := os.CreateTemp(s.dir, "certs*.pem")
	if err != nil {
		return nil, err
	}
	for _, c := range certs {
		_ = pem.Encode(f, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	_ = f.Close()
	out, err := exec.Command("openssl", "crl2pkcs7", "-nocrl", "-certfile", f.Name(), "-outform", "DER").Output()
	if err != nil {
		return nil, err
	}
	return wrap64(out), nil
}

func wrap64(der []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(der)
	var b bytes.Buffer
	for len(enc) > 64 {
		b.WriteString(enc[:64] + "\r\n")
		enc = enc[64:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}

func (s *rfcServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type"))
	s.mu.Unlock()
	op, ok := strings.CutPrefix(r.URL.Path, "/.well-known/est/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch {
	case op == "cacerts" && r.Method == http.MethodGet:
		s.reply(w, "application/pkcs7-mime", s.ca)
	case op == "csrattrs" && r.Method == http.MethodGet:
		if s.csrattr == nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/csrattrs")
		w.Header().Set("Content-Transfer-Encoding", "base64")
		_, _ = w.Write(wrap64(s.csrattr))
	case (op == "simpleenroll" || op == "simplereenroll") && r.Method == http.MethodPost:
		s.enroll(w, r, op == "simplereenroll")
	default:
		http.Error(w, "not implemented", http.StatusNotFound)
	}
}

func (s *rfcServer) reply(w http.ResponseWriter, ctype string, certs ...*x509.Certificate) {
	body, err := s.certsOnly(certs...)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ctype+"; smime-type=certs-only")
	w.Header().Set("Content-Transfer-Encoding", "base64")
	_, _ = w.Write(body)
}

func (s *rfcServer) enroll(w http.ResponseWriter, r *http.Request, re bool) {
	if mt := r.Header.Get("Content-Type"); !strings.HasPrefix(mt, "application/pkcs10") {
		http.Error(w, "want application/pkcs10", http.StatusUnsupportedMediaType)
		return
	}
	var peer *x509.Certificate
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		peer = r.TLS.PeerCertificates[0]
		if peer.CheckSignatureFrom(s.ca) != nil {
			peer = nil
		}
	}
	user, pass, basic := r.BasicAuth()
	switch {
	case re && peer == nil:
		http.Error(w, "re-enrollment needs the current certificate", http.StatusUnauthorized)
		return
	case !re && peer == nil && (!basic || user != "installer" || pass != "pw"):
		w.Header().Set("WWW-Authenticate", `Basic realm="est"`)
		http.Error(w, "authentication required", http.StatusUnauthorized)
		return
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(raw)), ""))
	if err != nil {
		http.Error(w, "body is not base64", http.StatusBadRequest)
		return
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil || csr.CheckSignature() != nil {
		http.Error(w, "bad pkcs10", http.StatusBadRequest)
		return
	}
	if re && csr.Subject.String() != peer.Subject.String() {
		http.Error(w, "subject differs from the certificate being renewed", http.StatusBadRequest)
		return
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	cder, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: serial, Subject: csr.Subject,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, s.ca, csr.PublicKey, s.caKey)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	cert, _ := x509.ParseCertificate(cder)
	s.reply(w, "application/pkcs7-mime", cert)
}

func rfcClient(t *testing.T, hs *httptest.Server, cert *tls.Certificate, basic bool) *est.Client {
	t.Helper()
	tr := hs.Client().Transport.(*http.Transport).Clone()
	if cert != nil {
		tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
	}
	o := est.Options{URL: hs.URL + "/.well-known/est", HTTPClient: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	if basic {
		o.Username, o.Password = "installer", "pw"
	}
	c, err := est.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func csrFor(t *testing.T, key *ecdsa.PrivateKey, cn string) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestInteropRFC7030Server runs the client against the independent
// server: cacerts, csrattrs, enroll with basic auth, re-enroll with the
// issued certificate (and a refused re-enroll with another subject).
func TestInteropRFC7030Server(t *testing.T) {
	t.Parallel()
	srv, hs := newRFCServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := rfcClient(t, hs, nil, true)
	cas, err := c.CACerts(ctx)
	if err != nil || len(cas) != 1 || !cas[0].Equal(srv.ca) {
		t.Fatalf("CACerts = %v, %v", cas, err)
	}
	attrs, err := c.CSRAttrs(ctx)
	if err != nil {
		t.Fatalf("CSRAttrs: %v", err)
	}
	if !attrs.Wants(est.OIDChallengePassword) || !attrs.Wants(est.OIDExtensionRequest) {
		t.Errorf("CSRAttrs %+v: want challengePassword and extensionRequest", attrs)
	}
	if curve, ok := attrs.Curve(); !ok || !curve.Equal(asn1.ObjectIdentifier{1, 3, 132, 0, 34}) {
		t.Errorf("curve %v, %v: want secp384r1", curve, ok)
	}
	if len(attrs.OIDs) != 2 || !attrs.OIDs[1].Equal(asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}) {
		t.Errorf("bare OIDs %v: want challengePassword, ecdsa-with-SHA384", attrs.OIDs)
	}

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, err := c.Enroll(ctx, csrFor(t, key, "SN-EST-1"))
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	if cert.Subject.CommonName != "SN-EST-1" || cert.CheckSignatureFrom(srv.ca) != nil {
		t.Errorf("issued %s, signature %v", cert.Subject, cert.CheckSignatureFrom(srv.ca))
	}
	pair := &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}

	re := rfcClient(t, hs, pair, false)
	key2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	renewed, err := re.Reenroll(ctx, csrFor(t, key2, "SN-EST-1"))
	if err != nil {
		t.Fatalf("Reenroll: %v", err)
	}
	if renewed.SerialNumber.Cmp(cert.SerialNumber) == 0 || renewed.Subject.CommonName != "SN-EST-1" {
		t.Errorf("re-enrolled %s serial %v", renewed.Subject, renewed.SerialNumber)
	}
	_, err = re.Reenroll(ctx, csrFor(t, key2, "SN-OTHER"))
	var se *est.StatusError
	if !errorsAs(err, &se) || se.StatusCode != http.StatusBadRequest {
		t.Errorf("Reenroll with another subject = %v, want 400", err)
	}
	if _, err := rfcClient(t, hs, nil, false).Enroll(ctx, csrFor(t, key, "x")); !errorsAs(err, &se) || se.StatusCode != http.StatusUnauthorized {
		t.Errorf("Enroll without credentials = %v, want 401", err)
	}

	srv.csrattr = nil // a server without attributes answers 404: no error, nothing asked
	attrs, err = c.CSRAttrs(ctx)
	if err != nil || len(attrs.OIDs)+len(attrs.Attributes) != 0 {
		t.Errorf("CSRAttrs from a server without attributes = %+v, %v", attrs, err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for _, r := range srv.requests {
		if strings.HasPrefix(r, "POST") && !strings.HasSuffix(r, "application/pkcs10") {
			t.Errorf("request %q: want Content-Type application/pkcs10", r)
		}
	}
}

func errorsAs(err error, target **est.StatusError) bool { return errors.As(err, target) }
