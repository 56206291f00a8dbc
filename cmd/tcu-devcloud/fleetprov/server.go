package fleetprov

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Topic filters the Server handles. Only the json payload format is
// implemented; cbor requests are answered on .../rejected with 400.
const (
	filterCreate    = "$aws/certificates/create/+"
	filterCreateCSR = "$aws/certificates/create-from-csr/+"
	filterRegister  = "$aws/provisioning-templates/+/provision/+"
	// filterEvents is the certificate event a renewed device publishes
	// (provisioning.CertificateEvent); the Server plays the backend rule
	// that deactivates the old certificate.
	filterEvents = "dt/tcu/+/certificate/rotated"
)

// awsExpiry is when AWS IoT's own client certificates expire.
var awsExpiry = time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC)

// Server answers fleet-provisioning requests and serves EST.
type Server struct {
	opts Options
	log  *slog.Logger

	mu         sync.Mutex
	faults     Faults             // guarded by mu
	dropped    int                // guarded by mu
	lost       int                // guarded by mu; answers withheld by LoseAnswerAt
	tokens     map[string]pending // guarded by mu; by ownership token
	used       map[string]bool    // guarded by mu; ownership tokens RegisterThing consumed
	certs      map[string]*cert   // guarded by mu; by certificate ID
	issued     int                // guarded by mu
	registered map[string]string  // guarded by mu; certificateId -> thing
	timers     []*time.Timer      // guarded by mu
	closed     bool               // guarded by mu
	est        estState           // guarded by mu
}

// cert is a certificate's registry entry.
type cert struct {
	der    []byte
	status string
	thing  string
}

// pending is a certificate waiting for RegisterThing.
type pending struct {
	certID  string
	certDER []byte
	expires time.Time
}

// New validates opts and registers the provisioning handlers on the broker.
func New(opts Options) (*Server, error) {
	if opts.Broker == nil {
		return nil, errors.New("fleetprov: nil broker")
	}
	if opts.CACert == nil || opts.CAKey == nil {
		return nil, errors.New("fleetprov: missing test CA")
	}
	for name, t := range opts.Templates {
		if t.ThingNameParam == "" {
			return nil, fmt.Errorf("fleetprov: template %q: empty thing name parameter", name)
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TokenLifetime <= 0 {
		opts.TokenLifetime = time.Hour
	}
	s := &Server{
		opts:       opts,
		log:        opts.Logger,
		tokens:     make(map[string]pending),
		used:       make(map[string]bool),
		certs:      make(map[string]*cert),
		registered: make(map[string]string),
	}
	opts.Broker.Handle(filterCreate, s.handleCreateKeys)
	opts.Broker.Handle(filterCreateCSR, s.handleCreateCSR)
	opts.Broker.Handle(filterRegister, s.handleRegister)
	opts.Broker.Handle(filterEvents, s.handleEvent)
	return s, nil
}

// SetFaults replaces the fault knobs; it also resets the drop counter.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
	s.dropped, s.lost = 0, 0
}

// Issued reports how many certificates the server has minted (MQTT and EST).
func (s *Server) Issued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued
}

// Things returns the registered things by certificate ID.
func (s *Server) Things() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.registered))
	for k, v := range s.registered {
		out[k] = v
	}
	return out
}

// Certificates returns the registry of issued certificates (MQTT API).
func (s *Server) Certificates() []Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Certificate, 0, len(s.certs))
	for id, c := range s.certs {
		out = append(out, Certificate{ID: id, Status: c.status, Thing: c.thing})
	}
	return out
}

// Count returns how many issued certificates have status (for thing, if
// not empty).
func (s *Server) Count(status, thing string) int {
	n := 0
	for _, c := range s.Certificates() {
		if c.Status == status && (thing == "" || c.Thing == thing) {
			n++
		}
	}
	return n
}

// Close cancels answers still held back by Faults.Delay.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, t := range s.timers {
		t.Stop()
	}
	s.timers = nil
	return nil
}

// format returns the payload format of a request topic (its last level).
func format(topic string) string {
	return topic[strings.LastIndexByte(topic, '/')+1:]
}

// intercept applies the drop fault for step and reports whether the
// request must go unanswered.
func (s *Server) intercept(step, clientID string) bool {
	s.mu.Lock()
	f := s.faults
	drop := f.DropAt == step && (f.DropCount == 0 || s.dropped < f.DropCount)
	if drop {
		s.dropped++
	}
	s.mu.Unlock()
	if !drop {
		return false
	}
	s.log.Info("dropping provisioning request", "step", step, "client_id", clientID)
	if d, ok := s.opts.Broker.(Disconnecter); ok {
		if err := d.Disconnect(clientID); err != nil {
			s.log.Warn("disconnect client", "client_id", clientID, "err", err)
		}
	}
	return true
}

// loseAnswer applies the LoseAnswerAt fault after step was carried out
// and reports whether the answer must be withheld.
func (s *Server) loseAnswer(step, clientID string) bool {
	s.mu.Lock()
	f := s.faults
	lose := f.LoseAnswerAt == step && (f.LoseCount == 0 || s.lost < f.LoseCount)
	if lose {
		s.lost++
	}
	s.mu.Unlock()
	if !lose {
		return false
	}
	s.log.Info("provisioning answer lost", "step", step, "client_id", clientID)
	if d, ok := s.opts.Broker.(Disconnecter); ok {
		if err := d.Disconnect(clientID); err != nil {
			s.log.Warn("disconnect client", "client_id", clientID, "err", err)
		}
	}
	return true
}

// reply publishes v on topic+suffix to clientID (see ClientPublisher),
// after the configured delay.
func (s *Server) reply(clientID, topic, suffix string, v any) {
	payload, err := json.Marshal(v)
	if err != nil {
		s.log.Error("encode provisioning answer", "topic", topic, "err", err)
		return
	}
	send := func() {
		var err error
		if cp, ok := s.opts.Broker.(ClientPublisher); ok {
			err = cp.PublishTo(clientID, topic+suffix, payload)
		} else {
			err = s.opts.Broker.Publish(topic+suffix, payload)
		}
		if err != nil {
			s.log.Warn("publish provisioning answer", "topic", topic+suffix, "err", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if s.faults.Delay <= 0 {
		go send() // the broker may not accept a publish from inside its handler
		return
	}
	s.timers = append(s.timers, time.AfterFunc(s.faults.Delay, send))
}

func (s *Server) reject(clientID, topic string, r Rejection) {
	s.log.Info("provisioning request rejected", "topic", topic, "client_id", clientID, "status_code", r.StatusCode, "error_code", r.ErrorCode)
	s.reply(clientID, topic, "/rejected", r)
}

// newToken returns a fresh opaque ownership token.
func newToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}
