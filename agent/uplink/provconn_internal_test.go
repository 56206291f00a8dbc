package uplink

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"
)

// TestStateNotifies: a waiter for the connection blocks on the session's
// change channel (no poll timer): it is not woken while nothing changes,
// is woken by a refused identity (SwitchCertificate's other exit) and
// returns the connection as soon as it is set.
func TestStateNotifies(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Broker, cfg.AllowPlaintext = "tcp://127.0.0.1:1", true
	s, err := New(Options{Config: cfg, Thing: "TCU-N", Queue: nopQueue{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	c0, ch := s.state()
	if c0 != nil {
		t.Fatal("connected before Run")
	}
	select {
	case <-ch:
		t.Fatal("change channel closed with no change")
	default:
	}
	s.notify() // a refused identity
	select {
	case <-ch:
	default:
		t.Fatal("a refused identity did not close the change channel")
	}

	pc := s.ProvisioningConn(nil)
	got := make(chan *conn, 1)
	errc := make(chan error, 1)
	go func() {
		c, err := pc.current(context.Background())
		errc <- err
		got <- c
	}()
	_, ch = s.state()
	want := &conn{}
	s.setConn(want)
	select {
	case <-ch:
	default:
		t.Fatal("setConn did not close the change channel")
	}
	select {
	case err := <-errc:
		if c := <-got; err != nil || c != want {
			t.Fatalf("current = %p, %v; want %p, nil", c, err, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("current did not return after the connection was set")
	}
	s.setConn(nil)

	ctx, cancel := context.WithCancel(context.Background())
	go func() { _, err := pc.current(ctx); errc <- err }()
	cancel()
	if err := <-errc; !errors.Is(err, ErrNotConnected) || !errors.Is(err, context.Canceled) {
		t.Fatalf("current after cancel = %v, want ErrNotConnected and context.Canceled", err)
	}
}
