package provisioningtest

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrConnLost is returned by a session the fake dropped (Knobs.Drop) or
// that was closed.
var ErrConnLost = errors.New("provisioningtest: connection lost")

// conn is one session. Answers are delivered from goroutines tracked by
// wg; Close stops pending deliveries and waits for them.
type conn struct {
	f        *Fake
	clientID string
	certID   string // of the certificate the session authenticated with
	done     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup

	mu   sync.Mutex
	subs map[string]func(string, []byte) // guarded by mu
	lost bool                            // guarded by mu
}

func newConn(f *Fake, clientID, certID string) *conn {
	return &conn{f: f, clientID: clientID, certID: certID, done: make(chan struct{}), subs: make(map[string]func(string, []byte))}
}

func (c *conn) alive() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lost {
		return ErrConnLost
	}
	select {
	case <-c.done:
		return ErrConnLost
	default:
		return nil
	}
}

// Subscribe registers fn for an exact topic.
func (c *conn) Subscribe(ctx context.Context, topic string, fn func(string, []byte)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.alive(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.subs[topic] = fn
	return nil
}

// Unsubscribe removes the subscription.
func (c *conn) Unsubscribe(ctx context.Context, topic string) error {
	if err := c.alive(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.subs, topic)
	return nil
}

// Publish hands the request to the responder.
func (c *conn) Publish(ctx context.Context, topic string, payload []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.alive(); err != nil {
		return err
	}
	c.f.handle(c, topic, append([]byte(nil), payload...))
	return nil
}

// Close ends the session; it is idempotent.
func (c *conn) Close() error {
	c.once.Do(func() { close(c.done); c.f.closed(c) })
	c.wg.Wait()
	return nil
}

// drop cuts the session as a broker would.
func (c *conn) drop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lost = true
}

// deliver sends payload on topic after delay, if still subscribed.
func (c *conn) deliver(topic string, payload []byte, delay time.Duration) {
	c.wg.Add(1)
	go func() { // stops after delay or when the session closes
		defer c.wg.Done()
		if delay > 0 {
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-c.done:
				return
			}
		}
		if c.alive() != nil {
			return
		}
		c.mu.Lock()
		fn := c.subs[topic]
		c.mu.Unlock()
		if fn != nil {
			fn(topic, payload)
		}
	}()
}

// subscribed reports whether topic has a subscriber.
func (c *conn) subscribed(topic string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subs[topic] != nil
}
