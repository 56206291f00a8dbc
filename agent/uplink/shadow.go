package uplink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/tcu-agent/tcu-agent/internal/backoff"
)

// Publisher is what the shadow reporter needs from a session.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

// ShadowOptions configure a Shadow.
type ShadowOptions struct {
	Publisher Publisher
	Thing     string
	Logger    *slog.Logger
	// MinInterval is the least time between two updates; changes within it
	// are coalesced into one (default 1s; AWS allows 20 shadow requests/s).
	MinInterval time.Duration
	// RetryInterval is the wait after a failed update (default 5s).
	RetryInterval time.Duration
}

// Shadow reports last-known state (doors, locks, ignition, position,
// agent version) to the classic device shadow. Update records a value;
// Run publishes changed keys, coalesced, as
// {"state":{"reported":{...}}} to $aws/things/{thing}/shadow/update.
type Shadow struct {
	opts  ShadowOptions
	topic string
	kick  chan struct{}

	mu       sync.Mutex
	reported map[string][]byte // guarded by mu; last value the shadow accepted
	pending  map[string][]byte // guarded by mu; changed since
}

// NewShadow returns a Shadow; call Run to start publishing.
func NewShadow(opts ShadowOptions) *Shadow {
	if opts.MinInterval <= 0 {
		opts.MinInterval = time.Second
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Shadow{
		opts: opts, topic: "$aws/things/" + opts.Thing + "/shadow/update",
		kick: make(chan struct{}, 1), reported: make(map[string][]byte), pending: make(map[string][]byte),
	}
}

// Update sets reported key to value (any JSON-encodable value). Nothing
// is sent when the value equals the last one reported.
func (s *Shadow) Update(key string, value any) {
	b, err := json.Marshal(value)
	if err != nil {
		s.opts.Logger.Warn("shadow value not encodable", "key", key, "err", err)
		return
	}
	s.mu.Lock()
	if prev, ok := s.reported[key]; ok && bytes.Equal(prev, b) {
		delete(s.pending, key)
		s.mu.Unlock()
		return
	}
	s.pending[key] = b
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run publishes pending changes until ctx is done; it returns nil.
func (s *Shadow) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		}
		if backoff.Sleep(ctx, s.opts.MinInterval) != nil { // coalesce a burst of changes
			return nil
		}
		for {
			err := s.flush(ctx)
			if err == nil || ctx.Err() != nil {
				break
			}
			if !errors.Is(err, ErrNotConnected) {
				s.opts.Logger.Warn("shadow update failed", "err", err)
			}
			if backoff.Sleep(ctx, s.opts.RetryInterval) != nil {
				return nil
			}
		}
	}
}

// flush publishes all pending keys in one update.
func (s *Shadow) flush(ctx context.Context) error {
	s.mu.Lock()
	if len(s.pending) == 0 {
		s.mu.Unlock()
		return nil
	}
	sent := make(map[string][]byte, len(s.pending))
	for k, v := range s.pending {
		sent[k] = v
	}
	s.mu.Unlock()
	payload := shadowDocument(sent)
	if err := s.opts.Publisher.Publish(ctx, s.topic, payload); err != nil {
		return fmt.Errorf("shadow update: %w", err)
	}
	s.mu.Lock()
	for k, v := range sent {
		s.reported[k] = v
		if p, ok := s.pending[k]; ok && bytes.Equal(p, v) {
			delete(s.pending, k)
		}
	}
	s.mu.Unlock()
	return nil
}

// shadowDocument encodes {"state":{"reported":{...}}} with sorted keys.
func shadowDocument(vals map[string][]byte) []byte {
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b := []byte(`{"state":{"reported":{`)
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		kb, _ := json.Marshal(k)
		b = append(b, kb...)
		b = append(b, ':')
		b = append(b, vals[k]...)
	}
	return append(b, "}}}"...)
}
