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

// stored is the on-disk form (format version 1). Field names are short
// because every buffered record carries them.
type stored struct {
	V     int             `json:"v"`
	Kind  string          `json:"k"`
	TS    int64           `json:"t"`
	Topic string          `json:"p,omitempty"`
	Body  json.RawMessage `json:"b"`
}

// storedVersion is the current on-disk format version.
const storedVersion = 1

// Marshal encodes r for the buffer.
func (r Record) Marshal() ([]byte, error) {
	if err := checkObject(r.Body); err != nil {
		return nil, fmt.Errorf("marshal record: %w", err)
	}
	if !validKind(r.Kind) {
		return nil, fmt.Errorf("marshal record: bad kind %q", r.Kind)
	}
	return json.Marshal(stored{V: storedVersion, Kind: r.Kind, TS: r.Time.UnixMilli(), Topic: r.Topic, Body: r.Body})
}

// ErrCorrupt marks bytes that are not a stored record.
var ErrCorrupt = errors.New("corrupt record")

// Unmarshal decodes bytes written by Marshal.
func Unmarshal(b []byte) (Record, error) {
	var s stored
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if dec.More() {
		return Record{}, fmt.Errorf("%w: trailing data", ErrCorrupt)
	}
	if s.V != storedVersion {
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
	b, err := json.Marshal(s)
	if err != nil { // cannot happen for a string
		return append(dst, `""`...)
	}
	return append(dst, b...)
}
