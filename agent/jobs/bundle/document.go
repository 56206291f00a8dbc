// Package bundle handles tcu.config.v1 configuration bundles: the job
// document that announces one (CONTRACTS C.1), its download (inline or
// HTTPS with retry, Range resume and a size cap), its SHA-256 and Ed25519
// signature checks, and the safe extraction of the tar it is.
//
// It imports nothing of the agent: keys are passed in as
// []ed25519.PublicKey, and validation of the extracted configuration is
// the caller's.
package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Type is the only job document type accepted.
const Type = "tcu.config.v1"

// MaxDocument is the AWS IoT job document limit.
const MaxDocument = 32 << 10

// Reasons reported in a job's statusDetails "reason" (CONTRACTS C.4).
const (
	ReasonBadSignature    = "bad_signature"
	ReasonBadHash         = "bad_hash"
	ReasonTooLarge        = "too_large"
	ReasonInvalidConfig   = "invalid_config"
	ReasonDownloadFailed  = "download_failed"
	ReasonUnhealthy       = "unhealthy"
	ReasonCrashLoop       = "crash_loop"
	ReasonUnsupportedType = "unsupported_type"
	ReasonBusy            = "busy"
	// ReasonInvalidDocument is a document of the right type that is
	// malformed (missing fields, bad encodings).
	ReasonInvalidDocument = "invalid_document"
)

// Error is a failure with a machine-readable reason.
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Fail returns an *Error.
func Fail(reason string, format string, args ...any) error {
	return &Error{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// ReasonOf returns err's reason, or fallback if it has none.
func ReasonOf(err error, fallback string) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return fallback
}

// Document is a parsed tcu.config.v1 job document.
type Document struct {
	Type      string `json:"type"`
	Version   string `json:"version"`
	SHA256    string `json:"sha256"`
	Signature string `json:"signature"`
	Size      int64  `json:"size"`
	Inline    string `json:"inline,omitempty"`
	URL       string `json:"url,omitempty"`

	// sig is Signature decoded.
	sig []byte
	// inline is Inline decoded.
	inline []byte
}

// ParseDocument decodes and checks a job document. maxSize bounds Size.
// The error is an *Error with reason unsupported_type, too_large or
// invalid_document.
func ParseDocument(raw []byte, maxSize int64) (*Document, error) {
	if len(raw) > MaxDocument {
		return nil, Fail(ReasonInvalidDocument, "job document is %d bytes, more than %d", len(raw), MaxDocument)
	}
	var probe struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, Fail(ReasonInvalidDocument, "job document is not a JSON object: %v", err)
	}
	if probe.Type != Type {
		return nil, Fail(ReasonUnsupportedType, "job document type %q is not supported (only %s)", probe.Type, Type)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	d := &Document{}
	if err := dec.Decode(d); err != nil {
		return nil, Fail(ReasonInvalidDocument, "job document: %v", err)
	}
	switch {
	case d.Version == "" || len(d.Version) > 64 || !utf8.ValidString(d.Version) || strings.ContainsAny(d.Version, "\n\r\x00"):
		return nil, Fail(ReasonInvalidDocument, "version must be 1-64 characters of one line")
	case len(d.SHA256) != 64 || strings.ToLower(d.SHA256) != d.SHA256 || !isHex(d.SHA256):
		return nil, Fail(ReasonInvalidDocument, "sha256 must be 64 lowercase hex digits")
	case d.Size <= 0:
		return nil, Fail(ReasonInvalidDocument, "size must be positive")
	case d.Size > maxSize:
		return nil, Fail(ReasonTooLarge, "bundle size %d exceeds [jobs] max_bundle_size %d", d.Size, maxSize)
	case (d.Inline == "") == (d.URL == ""):
		return nil, Fail(ReasonInvalidDocument, "exactly one of inline and url must be set")
	}
	sig, err := base64.StdEncoding.DecodeString(d.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, Fail(ReasonBadSignature, "signature is not a base64 Ed25519 signature")
	}
	d.sig = sig
	if d.Inline != "" {
		b, err := base64.StdEncoding.DecodeString(d.Inline)
		if err != nil {
			return nil, Fail(ReasonInvalidDocument, "inline is not base64: %v", err)
		}
		if int64(len(b)) != d.Size {
			return nil, Fail(ReasonBadHash, "inline bundle is %d bytes, the document says %d", len(b), d.Size)
		}
		d.inline = b
	} else {
		u, err := url.Parse(d.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, Fail(ReasonInvalidDocument, "url must be an https URL")
		}
	}
	return d, nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// SigningBytes is what the signature covers:
// "tcu.config.v1\n" + version + "\n" + sha256hex.
func SigningBytes(version, sha256hex string) []byte {
	return []byte(Type + "\n" + version + "\n" + sha256hex)
}

// Sign returns the document signature for version and sha256hex (tools
// and tests; the agent only verifies).
func Sign(key ed25519.PrivateKey, version, sha256hex string) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(key, SigningBytes(version, sha256hex)))
}

// VerifySignature checks the document's signature against keys. With no
// keys nothing verifies: unsigned configuration is never accepted.
func (d *Document) VerifySignature(keys []ed25519.PublicKey) error {
	if len(keys) == 0 {
		return Fail(ReasonBadSignature, "no [jobs] public_keys configured: configuration jobs are refused")
	}
	msg := SigningBytes(d.Version, d.SHA256)
	for _, k := range keys {
		if ed25519.Verify(k, msg, d.sig) {
			return nil
		}
	}
	return Fail(ReasonBadSignature, "no configured key verifies the signature")
}

// CheckBytes verifies that data is the bundle the document describes.
func (d *Document) CheckBytes(data []byte) error {
	if int64(len(data)) != d.Size {
		return Fail(ReasonBadHash, "bundle is %d bytes, the document says %d", len(data), d.Size)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != d.SHA256 {
		return Fail(ReasonBadHash, "bundle sha256 %s, the document says %s", got, d.SHA256)
	}
	return nil
}

// InlineBytes returns the inline bundle (nil for a URL document).
func (d *Document) InlineBytes() []byte { return d.inline }
