package provisioning

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Identity is the device's own credential.
type Identity struct {
	Thing       string          // AWS IoT thing name, also the MQTT client ID
	CertFile    string          // absolute path of the certificate (PEM)
	KeyFile     string          // absolute path of the private key (PEM, 0600)
	NotAfter    time.Time       // certificate expiry
	Source      string          // fleet, est or static
	Certificate tls.Certificate // ready for tls.Config.Certificates
	// DeviceConfiguration is RegisterThing's deviceConfiguration (the
	// template's DeviceConfiguration section); nil for EST and static.
	DeviceConfiguration map[string]string
}

// identityRecord is identity.json (version 1). Paths are relative to the
// identity directory, so the state directory can move.
type identityRecord struct {
	Version  int       `json:"version"`
	Thing    string    `json:"thing"`
	CertFile string    `json:"cert_file"`
	KeyFile  string    `json:"key_file"`
	Source   string    `json:"source"`
	NotAfter time.Time `json:"not_after"`
	// DeviceConfiguration is from RegisterThing (introduced in v1).
	DeviceConfiguration map[string]string `json:"device_configuration,omitempty"`
}

const identityVersion = 1

// Load returns the identity persisted under stateDir, or an error wrapping
// ErrNoIdentity when there is none.
func Load(stateDir string) (*Identity, error) {
	dir := filepath.Join(stateDir, identityDir)
	rec, err := readIdentityRecord(dir)
	if err != nil {
		return nil, err
	}
	return loadIdentity(dir, rec)
}

func readIdentityRecord(dir string) (*identityRecord, error) {
	b, err := os.ReadFile(filepath.Join(dir, identityFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoIdentity
	}
	if err != nil {
		return nil, fmt.Errorf("read identity: %w", err)
	}
	var rec identityRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("decode identity: %w", err)
	}
	if rec.Version != identityVersion {
		return nil, fmt.Errorf("identity version %d: want %d", rec.Version, identityVersion)
	}
	return &rec, nil
}

func loadIdentity(dir string, rec *identityRecord) (*Identity, error) {
	id := &Identity{
		Thing:    rec.Thing,
		CertFile: abs(dir, rec.CertFile),
		KeyFile:  abs(dir, rec.KeyFile),
		Source:   rec.Source,

		DeviceConfiguration: rec.DeviceConfiguration,
	}
	cert, leaf, err := loadKeyPair(id.CertFile, id.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("load identity %s: %w", rec.Thing, err)
	}
	id.Certificate = cert
	id.NotAfter = leaf.NotAfter
	return id, nil
}

func abs(dir, name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(dir, name)
}

// loadKeyPair reads a PEM certificate and key and checks they match.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, *x509.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("key pair: %w", err)
	}
	return cert, cert.Leaf, nil
}

// commitIdentity atomically makes rec the device identity.
func commitIdentity(dir string, rec identityRecord) error {
	rec.Version = identityVersion
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode identity: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, identityFile), b, 0o600); err != nil {
		return fmt.Errorf("commit identity: %w", err)
	}
	return nil
}
