package agenttest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
)

// Frame is one BODY_COMMAND frame seen on the bus, decoded with the DBC.
type Frame struct {
	At      time.Time
	Signals map[string]float64
}

// Response is one command response seen on cmd/tcu/{thing}/response/+.
type Response struct {
	devcloud.Response
	Topic string
	At    time.Time
}

// watchBus decodes every BODY_COMMAND frame on the bus until ctx ends.
func (s *System) watchBus(ctx context.Context, ep canbus.Bus) {
	msg, ok := s.db.Message("BODY_COMMAND")
	if !ok {
		s.t.Error("vehicle.dbc has no BODY_COMMAND")
		return
	}
	for {
		f, err := ep.Receive(ctx)
		if err != nil {
			return
		}
		if f.ID != msg.ID || f.Extended != msg.Extended {
			continue
		}
		vals, err := msg.Decode(f.Payload())
		if err != nil {
			s.t.Errorf("decode BODY_COMMAND: %v", err)
			continue
		}
		fr := Frame{At: time.Now(), Signals: make(map[string]float64, len(vals))}
		for _, v := range vals {
			fr.Signals[v.Signal.Name] = v.Phys
		}
		s.mu.Lock()
		s.frames = append(s.frames, fr)
		s.mu.Unlock()
	}
}

// Frames returns the BODY_COMMAND frames where signal had value, in order.
func (s *System) Frames(signal string, value float64) []Frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Frame
	for _, f := range s.frames {
		if v, ok := f.Signals[signal]; ok && v == value {
			out = append(out, f)
		}
	}
	return out
}

func (s *System) collectResponse(topic string, payload []byte) {
	r, err := devcloud.ParseResponse(payload)
	if err != nil {
		s.t.Errorf("bad command response on %s: %v: %s", topic, err, payload)
		return
	}
	if want := devcloud.ResponseTopic(s.opts.Thing, r.ID); topic != want {
		s.t.Errorf("command response for %s on %s, want %s", r.ID, topic, want)
	}
	s.mu.Lock()
	s.responses = append(s.responses, Response{Response: r, Topic: topic, At: time.Now()})
	s.mu.Unlock()
}

// Responses returns every response seen for command id, in order.
func (s *System) Responses(id string) []Response {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(s.responses), func(r Response) bool { return r.ID != id })
}

// SendRequest publishes req as the cloud would (on its request topic).
// Unlike devcloud.SendCommand it lets a test choose the id, e.g. to
// redeliver a request.
func (s *System) SendRequest(req devcloud.Request) error {
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("send request: %w", err)
	}
	return s.Cloud.Publish(devcloud.RequestTopic(s.opts.Thing, req.ID), b)
}

// NewRequest builds a request for command name valid for valid.
func (s *System) NewRequest(name string, valid time.Duration) devcloud.Request {
	return devcloud.NewRequest(s.opts.Thing, name, nil, time.Now(), valid)
}
