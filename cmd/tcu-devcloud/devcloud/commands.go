package devcloud

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Command statuses (AWS IoT Commands vocabulary).
const (
	StatusInProgress = "IN_PROGRESS"
	StatusSucceeded  = "SUCCEEDED"
	StatusFailed     = "FAILED"
	StatusRejected   = "REJECTED"
	StatusTimedOut   = "TIMED_OUT"
)

// Request is a command request as published on cmd/tcu/{thing}/request/{id}.
type Request struct {
	ID       string         `json:"id"`
	Device   string         `json:"device"`
	Name     string         `json:"name"`
	Params   map[string]any `json:"params"`
	IssuedAt int64          `json:"issued_at"`
	ValidMS  int64          `json:"valid_ms"`
	Sig      string         `json:"sig,omitempty"`
}

// Response is a command response from cmd/tcu/{thing}/response/{id}.
type Response struct {
	ID         string         `json:"id"`
	Device     string         `json:"device"`
	Status     string         `json:"status"`
	ReasonCode string         `json:"reason_code"`
	Reason     string         `json:"reason"`
	TS         int64          `json:"ts"`
	State      map[string]any `json:"state,omitempty"`
	// Latency is the time from sending the request to receiving this
	// response (set by the sender, not on the wire).
	Latency time.Duration `json:"-"`
}

// Final reports whether s ends a command.
func Final(status string) bool { return status != StatusInProgress }

// NewRequest builds a request with a fresh random UUID.
func NewRequest(thing, name string, params map[string]any, now time.Time, valid time.Duration) Request {
	if params == nil {
		params = map[string]any{}
	}
	return Request{ID: newUUID(), Device: thing, Name: name, Params: params,
		IssuedAt: now.UnixMilli(), ValidMS: valid.Milliseconds()}
}

// RequestTopic and ResponseTopic are the command topics of a thing.
func RequestTopic(thing, id string) string  { return "cmd/tcu/" + thing + "/request/" + id }
func ResponseTopic(thing, id string) string { return "cmd/tcu/" + thing + "/response/" + id }

// ParseResponse decodes a response payload.
func ParseResponse(b []byte) (Response, error) {
	var r Response
	if err := json.Unmarshal(b, &r); err != nil {
		return Response{}, fmt.Errorf("parse command response: %w", err)
	}
	if r.ID == "" || r.Status == "" {
		return Response{}, errors.New("parse command response: missing id or status")
	}
	return r, nil
}

// SendCommand publishes a command request to thing and returns a channel
// of its responses; the channel is closed after a final status or when
// ctx ends.
func (c *Cloud) SendCommand(ctx context.Context, thing, name string, params map[string]any) (<-chan Response, error) {
	sent := time.Now()
	req := NewRequest(thing, name, params, sent, c.opts.CommandValidity)
	payload, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("send command: %w", err)
	}
	ch := make(chan Response, 8)
	var once sync.Once
	var mu sync.Mutex
	closed := false
	var cancel func()
	done := make(chan struct{})
	finish := func() {
		once.Do(func() {
			cancel()
			mu.Lock()
			closed = true
			close(ch)
			mu.Unlock()
			close(done)
		})
	}
	cancel = c.Subscribe(ResponseTopic(thing, req.ID), func(_ string, b []byte) {
		r, err := ParseResponse(b)
		if err != nil {
			c.log.Warn("devcloud bad command response", "thing", thing, "err", err)
			return
		}
		r.Latency = time.Since(sent)
		mu.Lock()
		if !closed {
			select {
			case ch <- r:
			default:
			}
		}
		mu.Unlock()
		if Final(r.Status) {
			go finish() // not under the router's call
		}
	})
	if err := c.Publish(RequestTopic(thing, req.ID), payload); err != nil {
		finish()
		return nil, fmt.Errorf("send command: %w", err)
	}
	go func() { // ends with ctx or after the final response
		select {
		case <-ctx.Done():
			finish()
		case <-done:
		}
	}()
	return ch, nil
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
