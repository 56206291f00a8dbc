// Package record defines how the agent stores one outgoing item in the
// durable buffer and how a stored item becomes part of an MQTT message.
//
// A buffered item is either part of a stream (telemetry, events: batched into
// the versioned envelope of PRODUCT.md, `{"v":1,"device":...,"records":[...]}`)
// or a direct message (a command response) published alone, verbatim, to its
// own topic. The buffer itself stores opaque bytes; this package is the one
// place that knows their format.
package record

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Kinds of records (the envelope's "kind" field).
const (
	KindTelemetry       = "telemetry"
	KindEvent           = "event"
	KindCommandResult   = "command_result"
	KindCommandResponse = "command_response"
)

// Record is one buffered item.
type Record struct {
	// Kind is the envelope "kind" ("telemetry", "event", ...).
	Kind string
	// Time is when the observation was made (envelope "ts", Unix ms).
	Time time.Time
	// Topic is empty for stream records; for a direct message it is the
	// topic Body is published to, alone and verbatim.
	Topic string
	// Body is a JSON object. For stream records its fields follow
	// seq, ts and kind in the envelope record.
	Body json.RawMessage
}

// The on-disk form. Format 2 (written since this release) is a binary
// header followed by the body exactly as the envelope will carry it, so the
// drain only splices bytes (no JSON decode, no second JSON encode):
//
//	0x02 | uvarint len(kind) | kind | varint ts (Unix ms) |
//	uvarint len(topic) | topic | body (a JSON object)
//
// Format 1 (a JSON object {"v":1,"k":...,"t":...,"p":...,"b":...}, which
// starts with '{') is still read, so a store written by an older release
// drains after an upgrade.
const (
	storedV1 = 1
	storedV2 = 2
)

// storedJSON is format 1.
type storedJSON struct {
	V     int             `json:"v"`
	Kind  string          `json:"k"`
	TS    int64           `json:"t"`
	Topic string          `json:"p,omitempty"`
	Body  json.RawMessage `json:"b"`
}

// Marshal encodes r for the buffer (format 2).
func (r Record) Marshal() ([]byte, error) {
	if err := checkObject(r.Body); err != nil {
		return nil, fmt.Errorf("marshal record: %w", err)
	}
	if !validKind(r.Kind) {
		return nil, fmt.Errorf("marshal record: bad kind %q", r.Kind)
	}
	body := bytes.TrimSpace(r.Body)
	b := make([]byte, 0, 1+1+len(r.Kind)+binary.MaxVarintLen64+1+len(r.Topic)+len(body))
	b = append(b, storedV2)
	b = binary.AppendUvarint(b, uint64(len(r.Kind)))
	b = append(b, r.Kind...)
	b = binary.AppendVarint(b, r.Time.UnixMilli())
	b = binary.AppendUvarint(b, uint64(len(r.Topic)))
	b = append(b, r.Topic...)
	return append(b, body...), nil
}

// ErrCorrupt marks bytes that are not a stored record.
var ErrCorrupt = errors.New("corrupt record")

// Unmarshal decodes bytes written by Marshal (either format). Body aliases
// b in format 2: a caller that keeps it beyond b's lifetime copies it.
func Unmarshal(b []byte) (Record, error) {
	if len(b) > 0 && b[0] == storedV2 {
		return unmarshalV2(b[1:])
	}
	return unmarshalV1(b)
}

func unmarshalV2(b []byte) (Record, error) {
	kind, b, ok := cutBytes(b)
	if !ok {
		return Record{}, fmt.Errorf("%w: truncated kind", ErrCorrupt)
	}
	ts, n := binary.Varint(b)
	if n <= 0 {
		return Record{}, fmt.Errorf("%w: bad timestamp", ErrCorrupt)
	}
	topic, body, ok := cutBytes(b[n:])
	if !ok {
		return Record{}, fmt.Errorf("%w: truncated topic", ErrCorrupt)
	}
	if !validKind(string(kind)) {
		return Record{}, fmt.Errorf("%w: bad kind %q", ErrCorrupt, kind)
	}
	// A validity scan, not a decode: the body goes into the envelope as
	// is, and a damaged one must not break the whole message's JSON.
	if err := checkObject(body); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return Record{Kind: kindString(kind), Time: time.UnixMilli(ts), Topic: string(topic), Body: body}, nil
}

// kindString returns the kind without allocating for the known ones.
func kindString(b []byte) string {
	switch string(b) {
	case KindTelemetry:
		return KindTelemetry
	case KindEvent:
		return KindEvent
	case KindCommandResult:
		return KindCommandResult
	case KindCommandResponse:
		return KindCommandResponse
	}
	return string(b)
}

// cutBytes splits a uvarint-length-prefixed byte string off b.
func cutBytes(b []byte) (field, rest []byte, ok bool) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return nil, nil, false
	}
	return b[n : n+int(l)], b[n+int(l):], true
}

func unmarshalV1(b []byte) (Record, error) {
	var s storedJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if dec.More() {
		return Record{}, fmt.Errorf("%w: trailing data", ErrCorrupt)
	}
	if s.V != storedV1 {
		return Record{}, fmt.Errorf("%w: unsupported version %d", ErrCorrupt, s.V)
	}
	if !validKind(s.Kind) {
		return Record{}, fmt.Errorf("%w: bad kind %q", ErrCorrupt, s.Kind)
	}
	if err := checkObject(s.Body); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return Record{Kind: s.Kind, Time: time.UnixMilli(s.TS), Topic: s.Topic, Body: s.Body}, nil
}

// AppendEnvelope appends the envelope form of r with the given seq to dst:
// {"seq":N,"ts":MS,"kind":"K",<fields of Body>}. r.Body must be a JSON
// object (as guaranteed by Unmarshal).
func AppendEnvelope(dst []byte, seq uint64, r Record) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, r.Time.UnixMilli(), 10)
	dst = append(dst, `,"kind":`...)
	dst = appendJSONString(dst, r.Kind)
	body := bytes.TrimSpace(r.Body)
	inner := bytes.TrimSpace(body[1 : len(body)-1])
	if len(inner) > 0 {
		dst = append(dst, ',')
		dst = append(dst, inner...)
	}
	return append(dst, '}')
}

func checkObject(b json.RawMessage) error {
	t := bytes.TrimSpace(b)
	if len(t) < 2 || t[0] != '{' || t[len(t)-1] != '}' || !json.Valid(t) {
		return errors.New("body is not a JSON object")
	}
	return nil
}

// validKind accepts the snake_case kinds this format uses.
func validKind(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for _, c := range k {
		if (c < 'a' || c > 'z') && c != '_' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// appendJSONString appends s as a JSON string literal.
func appendJSONString(dst []byte, s string) []byte {
	if validKind(s) { // the common case, a kind: nothing to escape
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	b, err := json.Marshal(s)
	if err != nil { // cannot happen for a string
		return append(dst, `""`...)
	}
	return append(dst, b...)
}
