package uplink_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcu-agent/tcu-agent/agent/uplink"
)

// fakePublisher records shadow updates; fail makes Publish fail.
type fakePublisher struct {
	mu     sync.Mutex
	got    []string
	fail   error
	failed int // publishes refused with fail
}

func (p *fakePublisher) Publish(_ context.Context, topic string, payload []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail != nil {
		p.failed++
		return p.fail
	}
	p.got = append(p.got, topic+" "+string(payload))
	return nil
}

func (p *fakePublisher) updates() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.got...)
}

// TestShadowCoalesces: a burst of changes becomes one update carrying
// only changed keys; unchanged values send nothing; an offline session
// is retried.
func TestShadowCoalesces(t *testing.T) {
	pub := &fakePublisher{fail: uplink.ErrNotConnected}
	sh := uplink.NewShadow(uplink.ShadowOptions{Publisher: pub, Thing: "T1", MinInterval: 50 * time.Millisecond, RetryInterval: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- sh.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	sh.Update("locked", false)
	sh.Update("locked", true)
	sh.Update("ignition", "off")
	eventually(t, 5*time.Second, "a retry while offline", func() bool { pub.mu.Lock(); defer pub.mu.Unlock(); return pub.failed >= 2 })
	pub.mu.Lock()
	pub.fail = nil
	pub.mu.Unlock()
	eventually(t, 5*time.Second, "first update", func() bool { return len(pub.updates()) == 1 })
	sh.Update("locked", true) // unchanged: nothing
	sh.Update("position", map[string]float64{"lat": 52.5, "lon": 13.4})
	eventually(t, 5*time.Second, "second update", func() bool { return len(pub.updates()) == 2 })
	time.Sleep(150 * time.Millisecond)
	want := []string{
		`$aws/things/T1/shadow/update {"state":{"reported":{"ignition":"off","locked":true}}}`,
		`$aws/things/T1/shadow/update {"state":{"reported":{"position":{"lat":52.5,"lon":13.4}}}}`,
	}
	if diff := cmp.Diff(want, pub.updates()); diff != "" {
		t.Errorf("updates (-want +got):\n%s", diff)
	}
}
