package command

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Request is one parsed command request. Wire format (v1):
//
//	{"id":"<id>","device":"<thing>","name":"door.lock","params":{},
//	 "issued_at":<unix ms>,"valid_ms":30000,"sig":"<base64>"}
//
// params and sig are optional; no other field is accepted.
type Request struct {
	// ID identifies the command for its whole life: 1-64 of [A-Za-z0-9_-].
	ID string `json:"id"`
	// Device is the thing name the command is meant for.
	Device string `json:"device"`
	// Name is the command name ("door.lock").
	Name string `json:"name"`
	// Params is a JSON object (compacted), "{}" when absent.
	Params json.RawMessage `json:"params,omitempty"`
	// IssuedAt is when the backend issued the command, Unix ms.
	IssuedAt int64 `json:"issued_at"`
	// ValidMS is how long after IssuedAt the command may start, in ms.
	ValidMS int64 `json:"valid_ms"`
	// Sig is the base64 Ed25519 signature over SigningBytes, or "".
	Sig string `json:"sig,omitempty"`
}

// ErrMalformed classifies requests that are not well-formed commands.
var ErrMalformed = errors.New("malformed request")

// ErrTooLarge classifies requests over the size limit.
var ErrTooLarge = errors.New("request too large")

var (
	idRE     = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	deviceRE = regexp.MustCompile(`^[A-Za-z0-9:_-]{1,128}$`)
)

// ParseRequest parses a request in the project format strictly: the payload
// must be at most maxBytes, one JSON object with no unknown or duplicate
// fields and every required field present with the right type.
func ParseRequest(b []byte, maxBytes int) (Request, error) {
	return parse(b, maxBytes, false)
}

// parse parses b; with aws set (AWS IoT Commands intake, where the topic
// carries the execution id and the thing name) id and device may be absent.
func parse(b []byte, maxBytes int, aws bool) (Request, error) {
	if len(b) > maxBytes {
		return Request{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), maxBytes)
	}
	fields, err := topLevel(b)
	if err != nil {
		return Request{}, err
	}
	var r Request
	for _, f := range []struct {
		key      string
		dst      *string
		re       *regexp.Regexp
		optional bool
	}{
		{"id", &r.ID, idRE, aws},
		{"device", &r.Device, deviceRE, aws},
		{"name", &r.Name, nameRE, false},
		{"sig", &r.Sig, nil, true},
	} {
		raw, ok := fields[f.key]
		if !ok {
			if f.optional {
				continue
			}
			return Request{}, fmt.Errorf("%w: missing field %q", ErrMalformed, f.key)
		}
		if err := strictString(raw, f.dst); err != nil {
			return Request{}, fmt.Errorf("%w: field %q: %w", ErrMalformed, f.key, err)
		}
		if f.re != nil && !f.re.MatchString(*f.dst) {
			return Request{}, fmt.Errorf("%w: field %q: invalid value %q", ErrMalformed, f.key, clip(*f.dst))
		}
	}
	for _, f := range []struct {
		key string
		dst *int64
	}{{"issued_at", &r.IssuedAt}, {"valid_ms", &r.ValidMS}} {
		raw, ok := fields[f.key]
		if !ok {
			return Request{}, fmt.Errorf("%w: missing field %q", ErrMalformed, f.key)
		}
		if err := json.Unmarshal(raw, f.dst); err != nil || bytes.Equal(raw, []byte("null")) {
			return Request{}, fmt.Errorf("%w: field %q: want an integer", ErrMalformed, f.key)
		}
		if *f.dst <= 0 {
			return Request{}, fmt.Errorf("%w: field %q: must be > 0", ErrMalformed, f.key)
		}
	}
	r.Params, err = parseParams(fields["params"])
	if err != nil {
		return Request{}, err
	}
	return r, nil
}

// parseParams returns the params object compacted, "{}" when absent.
func parseParams(raw json.RawMessage) (json.RawMessage, error) {
	if raw == nil {
		return json.RawMessage("{}"), nil
	}
	if raw[0] != '{' {
		return nil, fmt.Errorf("%w: field \"params\": want an object", ErrMalformed)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, fmt.Errorf("%w: field \"params\": %w", ErrMalformed, err)
	}
	return buf.Bytes(), nil
}

var knownFields = map[string]bool{
	"id": true, "device": true, "name": true, "params": true,
	"issued_at": true, "valid_ms": true, "sig": true,
}

// topLevel splits one JSON object into its raw field values, rejecting
// unknown and duplicate keys and trailing data.
func topLevel(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	fields := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("%w: bad object key", ErrMalformed)
		}
		if !knownFields[key] {
			return nil, fmt.Errorf("%w: unknown field %q", ErrMalformed, clip(key))
		}
		if _, dup := fields[key]; dup {
			return nil, fmt.Errorf("%w: duplicate field %q", ErrMalformed, key)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%w: field %q: %v", ErrMalformed, key, err)
		}
		fields[key] = raw
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, fmt.Errorf("%w: unterminated object", ErrMalformed)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data after object", ErrMalformed)
	}
	return fields, nil
}

func strictString(raw json.RawMessage, dst *string) error {
	if len(raw) == 0 || raw[0] != '"' {
		return errors.New("want a string")
	}
	return json.Unmarshal(raw, dst)
}

// clip shortens outside text quoted in errors and logs.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// source is where a request came from.
type source int

const (
	srcProject source = iota // cmd/tcu/{thing}/request/{id}
	srcAWS                   // $aws/commands/things/{thing}/executions/{id}/request/json
)

// topics holds the subscription filters and response topics of one thing.
type topics struct{ thing string }

func (t topics) filters() []string {
	return []string{
		"cmd/tcu/" + t.thing + "/request/+",
		"$aws/commands/things/" + t.thing + "/executions/+/request/json",
	}
}

// parse returns the id and source of a request topic.
func (t topics) parse(topic string) (string, source, bool) {
	p := strings.Split(topic, "/")
	switch {
	case len(p) == 5 && p[0] == "cmd" && p[1] == "tcu" && p[2] == t.thing && p[3] == "request":
		return p[4], srcProject, idRE.MatchString(p[4])
	case len(p) == 8 && p[0] == "$aws" && p[1] == "commands" && p[2] == "things" && p[3] == t.thing &&
		p[4] == "executions" && p[6] == "request" && p[7] == "json":
		return p[5], srcAWS, idRE.MatchString(p[5])
	}
	return "", 0, false
}

// response returns the response topic for id from src.
func (t topics) response(id string, src source) string {
	if src == srcAWS {
		return "$aws/commands/things/" + t.thing + "/executions/" + id + "/response/json"
	}
	return "cmd/tcu/" + t.thing + "/response/" + id
}
