package command

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// signingDomain starts the canonical form so that a signature over a command
// can never be mistaken for a signature over anything else.
const signingDomain = "tcu-agent command v1"

// SigningBytes returns the canonical form of r that Sig signs: these seven
// lines joined by "\n" (no trailing newline), all UTF-8:
//
//	tcu-agent command v1
//	<id>
//	<device>
//	<name>
//	<issued_at as decimal>
//	<valid_ms as decimal>
//	<params: the JSON object as sent, insignificant whitespace removed>
//
// id, device and name cannot contain "\n" (their syntax forbids it) and a
// compacted JSON object has no raw newline, so the form is unambiguous.
// Absent params are "{}".
func SigningBytes(r Request) []byte {
	params := r.Params
	if len(params) == 0 {
		params = []byte("{}")
	}
	var b []byte
	b = append(b, signingDomain...)
	for _, s := range []string{r.ID, r.Device, r.Name} {
		b = append(b, '\n')
		b = append(b, s...)
	}
	b = append(b, '\n')
	b = strconv.AppendInt(b, r.IssuedAt, 10)
	b = append(b, '\n')
	b = strconv.AppendInt(b, r.ValidMS, 10)
	b = append(b, '\n')
	return append(b, params...)
}

// Sign sets r.Sig to the signature of SigningBytes(r) by key. Backends and
// tests use it; the agent only verifies.
func Sign(r *Request, key ed25519.PrivateKey) {
	r.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(key, SigningBytes(*r)))
}

// ErrSignature classifies missing or invalid signatures.
var ErrSignature = errors.New("bad signature")

// VerifySignature checks r.Sig against keys. With no keys every request
// passes (signing is off).
func VerifySignature(r Request, keys []ed25519.PublicKey) error {
	if len(keys) == 0 {
		return nil
	}
	if r.Sig == "" {
		return fmt.Errorf("%w: request is not signed", ErrSignature)
	}
	sig, err := base64.StdEncoding.DecodeString(r.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: sig is not a base64 Ed25519 signature", ErrSignature)
	}
	msg := SigningBytes(r)
	for _, k := range keys {
		if ed25519.Verify(k, msg, sig) {
			return nil
		}
	}
	return fmt.Errorf("%w: no configured key verifies the signature", ErrSignature)
}

// loadKeys resolves Config.PublicKeys: each is base64 of 32 raw bytes, or a
// path (relative to dir) to a file holding that or a PEM "PUBLIC KEY".
func loadKeys(specs []string, dir string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for _, s := range specs {
		if k, ok := rawKey(s); ok {
			keys = append(keys, k)
			continue
		}
		path := s
		if !filepath.IsAbs(path) && dir != "" {
			path = filepath.Join(dir, path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("load public key: %w", err)
		}
		k, err := parseKeyFile(b)
		if err != nil {
			return nil, fmt.Errorf("load public key %s: %w", path, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func rawKey(s string) (ed25519.PublicKey, bool) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, false
	}
	return ed25519.PublicKey(b), true
}

func parseKeyFile(b []byte) (ed25519.PublicKey, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("pem block %q is not a PUBLIC KEY", blk.Type)
		}
		pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse public key: %w", err)
		}
		k, ok := pub.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("public key is %T, not Ed25519", pub)
		}
		return k, nil
	}
	if k, ok := rawKey(string(b)); ok {
		return k, nil
	}
	return nil, errors.New("not a PEM public key or base64 Ed25519 key")
}

// LoadPublicKeys is the [commands] public_keys loader, shared with
// [jobs] public_keys: each spec is base64 of 32 raw bytes, or a path
// (relative to dir) to a file holding that or a PEM "PUBLIC KEY".
func LoadPublicKeys(specs []string, dir string) ([]ed25519.PublicKey, error) {
	return loadKeys(specs, dir)
}
