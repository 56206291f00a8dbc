package devcloud

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// Bundle and job document facts (docs/operations.md, CONTRACTS C.1–C.2).
const (
	DocType          = "tcu.config.v1"
	BundleConfigName = "tcu-agent.toml"
	MaxBundleEntries = 64
	MaxVersionLen    = 64
	// FleetKeyFile and FleetPubFile hold the dev fleet key in the dev
	// cloud directory: PKCS#8 PEM private key, base64 public key (the
	// format [jobs] public_keys takes).
	FleetKeyFile = "fleet-key.pem"
	FleetPubFile = "fleet-key.pub"
)

// Document is a tcu.config.v1 job document.
type Document struct {
	Type      string `json:"type"`
	Version   string `json:"version"`
	SHA256    string `json:"sha256"`
	Signature string `json:"signature"`
	Size      int64  `json:"size"`
	Inline    string `json:"inline,omitempty"`
	URL       string `json:"url,omitempty"`
}

// SignedMessage is what the document's signature covers.
func SignedMessage(version, sha256hex string) []byte {
	return []byte(DocType + "\n" + version + "\n" + sha256hex)
}

// NewDocument hashes and signs bundle for version; the caller sets
// Inline or URL.
func NewDocument(key ed25519.PrivateKey, version string, bundle []byte) (Document, error) {
	if version == "" || len(version) > MaxVersionLen {
		return Document{}, fmt.Errorf("job document: version must be 1-%d characters", MaxVersionLen)
	}
	sum := sha256.Sum256(bundle)
	h := hex.EncodeToString(sum[:])
	sig := ed25519.Sign(key, SignedMessage(version, h))
	return Document{Type: DocType, Version: version, SHA256: h,
		Signature: base64.StdEncoding.EncodeToString(sig), Size: int64(len(bundle))}, nil
}

// InlineDocument returns the document with the bundle inline, or false
// if it would exceed the 32 KB job document limit.
func InlineDocument(d Document, bundle []byte) ([]byte, bool) {
	d.Inline, d.URL = base64.StdEncoding.EncodeToString(bundle), ""
	b, _ := json.Marshal(d)
	return b, len(b) <= MaxJobDocument
}

// DefaultVersion is the version a push gets when none is given.
func DefaultVersion(now time.Time) string { return now.UTC().Format("2006-01-02T150405Z") }

// BuildBundle returns the bundle bytes for p: a tar file is read as is
// (and checked); a directory becomes a tar holding tcu-agent.toml and
// every regular file inside the directory that a string value of the
// TOML names by relative path (DBC files, key files).
func BuildBundle(p string) ([]byte, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("build bundle: %w", err)
	}
	if !fi.IsDir() {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("build bundle: %w", err)
		}
		if err := CheckBundle(b); err != nil {
			return nil, fmt.Errorf("build bundle: %s: %w", p, err)
		}
		return b, nil
	}
	cfg, err := os.ReadFile(filepath.Join(p, BundleConfigName))
	if err != nil {
		return nil, fmt.Errorf("build bundle: %w", err)
	}
	var doc any
	if err := toml.Unmarshal(cfg, &doc); err != nil {
		return nil, fmt.Errorf("build bundle: %s: %w", BundleConfigName, err)
	}
	refs := map[string]bool{}
	walkStrings(doc, func(s string) {
		if s == "" || filepath.IsAbs(s) || strings.ContainsAny(s, "\n\x00") {
			return
		}
		clean := path.Clean(filepath.ToSlash(s))
		if clean == "." || clean == ".." || strings.HasPrefix(clean, "../") || clean == BundleConfigName {
			return
		}
		if st, err := os.Lstat(filepath.Join(p, filepath.FromSlash(clean))); err == nil && st.Mode().IsRegular() {
			refs[clean] = true
		}
	})
	names := []string{BundleConfigName}
	for n := range refs {
		names = append(names, n)
	}
	slices.Sort(names[1:])
	files := map[string][]byte{BundleConfigName: cfg}
	for _, n := range names[1:] {
		if files[n], err = os.ReadFile(filepath.Join(p, filepath.FromSlash(n))); err != nil {
			return nil, fmt.Errorf("build bundle: %w", err)
		}
	}
	return TarFiles(names, files)
}

func walkStrings(v any, fn func(string)) {
	switch x := v.(type) {
	case string:
		fn(x)
	case map[string]any:
		for _, e := range x {
			walkStrings(e, fn)
		}
	case []any:
		for _, e := range x {
			walkStrings(e, fn)
		}
	}
}

// TarFiles writes an uncompressed POSIX (ustar) tar of files in the given
// order, with the directories their paths need.
func TarFiles(names []string, files map[string][]byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	mod := time.Unix(0, 0)
	for _, n := range names {
		for d := path.Dir(n); d != "."; d = path.Dir(d) {
			if dirs[d] {
				break
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: mod, Format: tar.FormatUSTAR}); err != nil {
				return nil, fmt.Errorf("tar: %w", err)
			}
		}
		b := files[n]
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: int64(len(b)), ModTime: mod, Format: tar.FormatUSTAR}); err != nil {
			return nil, fmt.Errorf("tar: %w", err)
		}
		if _, err := tw.Write(b); err != nil {
			return nil, fmt.Errorf("tar: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tar: %w", err)
	}
	return buf.Bytes(), nil
}

// CheckBundle checks the bundle rules the agent enforces (C.2), so that a
// push fails early: tcu-agent.toml present, relative paths without "..",
// regular files and directories only, at most 64 entries.
func CheckBundle(b []byte) error {
	tr := tar.NewReader(bytes.NewReader(b))
	n, hasConfig := 0, false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("not a tar: %w", err)
		}
		n++
		if n > MaxBundleEntries {
			return fmt.Errorf("more than %d entries", MaxBundleEntries)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") || strings.Contains(name, "/../") || strings.HasSuffix(name, "/..") {
			return fmt.Errorf("entry %q: not a relative path inside the bundle", h.Name)
		}
		if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeDir {
			return fmt.Errorf("entry %q: only regular files and directories", h.Name)
		}
		hasConfig = hasConfig || (path.Clean(name) == BundleConfigName && h.Typeflag == tar.TypeReg)
	}
	if !hasConfig {
		return fmt.Errorf("no %s", BundleConfigName)
	}
	return nil
}

// LoadOrCreateFleetKey loads the dev fleet key from dir, generating and
// writing it (and its public key) when absent.
func LoadOrCreateFleetKey(dir string) (ed25519.PrivateKey, error) {
	p := filepath.Join(dir, FleetKeyFile)
	if _, err := os.Stat(p); err == nil {
		return LoadPrivateKey(p)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("fleet key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("fleet key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("fleet key: %w", err)
	}
	if err := writeFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("fleet key: %w", err)
	}
	pub := base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)) + "\n"
	if err := writeFile(filepath.Join(dir, FleetPubFile), []byte(pub), 0o644); err != nil {
		return nil, fmt.Errorf("fleet key: %w", err)
	}
	return key, nil
}

// LoadPrivateKey reads an Ed25519 private key: PKCS#8 PEM ("PRIVATE
// KEY", as openssl genpkey -algorithm ed25519 writes), or base64 of the
// 32-byte seed or the 64-byte key.
func LoadPrivateKey(p string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("load private key: %w", err)
	}
	if blk, _ := pem.Decode(b); blk != nil {
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("load private key %s: %w", p, err)
		}
		ek, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("load private key %s: %T is not Ed25519", p, k)
		}
		return ek, nil
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	switch {
	case err != nil:
	case len(raw) == ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(raw), nil
	case len(raw) == ed25519.PrivateKeySize:
		return ed25519.PrivateKey(raw), nil
	}
	return nil, fmt.Errorf("load private key %s: not a PKCS#8 PEM or base64 Ed25519 key", p)
}

// PublicKeyBase64 is the key's public half as [jobs] public_keys takes it.
func PublicKeyBase64(k ed25519.PrivateKey) string {
	return base64.StdEncoding.EncodeToString(k.Public().(ed25519.PublicKey))
}
