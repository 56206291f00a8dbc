package devcloud

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Certificate kinds, carried in the subject's OrganizationalUnit so the
// broker can tell a thing certificate from a claim certificate.
const (
	KindThing = "thing"
	KindClaim = "claim"
)

// CA is the devcloud's own test certificate authority.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
}

// Identity is a minted certificate with its key.
type Identity struct {
	Certificate tls.Certificate
	CertPEM     []byte
	KeyPEM      []byte
}

// MintRequest describes a certificate to mint.
type MintRequest struct {
	Kind       string // KindThing or KindClaim
	CommonName string // the thing name for KindThing
	NotBefore  time.Time
	NotAfter   time.Time
	DNSNames   []string
	IPs        []net.IP
	Server     bool // a server (not client) certificate
}

// File names inside the CA directory.
const (
	CACertFile     = "ca.pem"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.pem"
	ServerKeyFile  = "server.key"
)

// LoadOrCreateCA loads the CA from dir, creating it (and dir) when absent.
// An empty dir gives an in-memory CA.
func LoadOrCreateCA(dir string) (*CA, error) {
	if dir != "" {
		certPEM, err1 := os.ReadFile(filepath.Join(dir, CACertFile))
		keyPEM, err2 := os.ReadFile(filepath.Join(dir, CAKeyFile))
		if err1 == nil && err2 == nil {
			return parseCA(certPEM, keyPEM)
		}
		if !errors.Is(err1, os.ErrNotExist) && err1 != nil {
			return nil, fmt.Errorf("load ca: %w", err1)
		}
	}
	ca, keyPEM, err := newCA()
	if err != nil {
		return nil, err
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create ca dir: %w", err)
		}
		if err := writeFile(filepath.Join(dir, CACertFile), ca.CertPEM, 0o644); err != nil {
			return nil, err
		}
		if err := writeFile(filepath.Join(dir, CAKeyFile), keyPEM, 0o600); err != nil {
			return nil, err
		}
	}
	return ca, nil
}

func newCA() (*CA, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate ca key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "tcu-devcloud test CA", Organization: []string{"tcu-devcloud"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create ca certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal ca key: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	return ca, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func parseCA(certPEM, keyPEM []byte) (*CA, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("load ca: key is not a signer")
	}
	return &CA{Cert: cert, Key: signer, CertPEM: certPEM}, nil
}

// Pool returns a pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Mint issues a certificate with a fresh P-256 key.
func (ca *CA) Mint(r MintRequest) (*Identity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("mint %s: %w", r.CommonName, err)
	}
	if r.NotBefore.IsZero() {
		r.NotBefore = time.Now().Add(-time.Hour)
	}
	if r.NotAfter.IsZero() {
		r.NotAfter = time.Now().AddDate(1, 0, 0)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: r.CommonName, OrganizationalUnit: []string{r.Kind}, Organization: []string{"tcu-devcloud"}},
		NotBefore:    r.NotBefore, NotAfter: r.NotAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames:    r.DNSNames, IPAddresses: r.IPs,
	}
	if r.Server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("mint %s: %w", r.CommonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("mint %s: %w", r.CommonName, err)
	}
	id := &Identity{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	if id.Certificate, err = tls.X509KeyPair(id.CertPEM, id.KeyPEM); err != nil {
		return nil, fmt.Errorf("mint %s: %w", r.CommonName, err)
	}
	return id, nil
}

// MintThing issues a thing certificate for thing, valid for a year.
func (ca *CA) MintThing(thing string) (*Identity, error) {
	return ca.Mint(MintRequest{Kind: KindThing, CommonName: thing})
}

// MintClaim issues a claim (fleet provisioning) certificate.
func (ca *CA) MintClaim(name string) (*Identity, error) {
	return ca.Mint(MintRequest{Kind: KindClaim, CommonName: name})
}

// ServerIdentity issues the broker certificate for 127.0.0.1, ::1 and
// localhost.
func (ca *CA) ServerIdentity() (*Identity, error) {
	return ca.Mint(MintRequest{Kind: "server", CommonName: "localhost", Server: true,
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}})
}

// WriteFiles writes the certificate and key as <base>.pem and <base>.key
// (mode 0600) into dir and returns their paths.
func (id *Identity) WriteFiles(dir, base string) (certPath, keyPath string, err error) {
	certPath, keyPath = filepath.Join(dir, base+".pem"), filepath.Join(dir, base+".key")
	if err := writeFile(certPath, id.CertPEM, 0o644); err != nil {
		return "", "", err
	}
	if err := writeFile(keyPath, id.KeyPEM, 0o600); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

func writeFile(path string, b []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, b, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}
