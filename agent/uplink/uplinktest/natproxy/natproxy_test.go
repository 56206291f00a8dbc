package natproxy

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer echoes every connection until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range conns {
					_ = c.Close()
				}
				return
			}
			conns = append(conns, c)
			go func() { _, _ = io.Copy(c, c) }() // ends when c closes
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String()
}

func start(t *testing.T) (*Proxy, net.Conn) {
	t.Helper()
	p, err := New(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return p, c
}

// roundTrip writes msg and reads the echo within d.
func roundTrip(c net.Conn, msg string, d time.Duration) error {
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	if err == nil && string(buf) != msg {
		return errors.New("echo mismatch: " + string(buf))
	}
	return err
}

func TestNormalForwards(t *testing.T) {
	p, c := start(t)
	for i := range 3 {
		if err := roundTrip(c, "hello", 5*time.Second); err != nil {
			t.Fatalf("round trip %d: %v", i, err)
		}
	}
	if st := p.Stats(); st.Accepted != 1 || st.Blackholed+st.Resets != 0 || st.BytesUp != 15 || st.BytesDown != 15 {
		t.Fatalf("stats %+v, want 1 accepted, 15 bytes each way", st)
	}
}

// TestIdleBlackhole: a mapping idle past the timeout passes nothing more,
// and nothing is closed: the client's reads time out, writes succeed.
// Traffic inside the timeout keeps the mapping.
func TestIdleBlackhole(t *testing.T) {
	p, c := start(t)
	p.SetIdleTimeout(300*time.Millisecond, Blackhole)
	for range 4 { // activity every 100 ms keeps the mapping
		if err := roundTrip(c, "ping", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().Blackholed == 0 {
		if time.Now().After(deadline) {
			t.Fatal("mapping never expired")
		}
		time.Sleep(20 * time.Millisecond)
	}
	err := roundTrip(c, "lost", 500*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after the drop: %v, want a read timeout (no data, no close)", err)
	}
	if _, err := c.Write([]byte("more")); err != nil {
		t.Fatalf("write after the drop: %v, want success (the socket looks up)", err)
	}
	if d := p.Drops(); len(d) != 1 {
		t.Fatalf("drops %v", d)
	}
}

// TestReset: ResetAll closes the client's connection with RST.
func TestReset(t *testing.T) {
	p, c := start(t)
	if err := roundTrip(c, "hi", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.ResetAll()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 8))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after reset: %v, want ECONNRESET", err)
	}
	if st := p.Stats(); st.Resets != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestIdleReset: with OnIdle Reset an idle mapping is reset.
func TestIdleReset(t *testing.T) {
	p, c := start(t)
	p.SetIdleTimeout(200*time.Millisecond, Reset)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 8))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v, want ECONNRESET", err)
	}
	if st := p.Stats(); st.Resets != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestBlackholeAll drops a busy mapping at once.
func TestBlackholeAll(t *testing.T) {
	p, c := start(t)
	if err := roundTrip(c, "hi", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.BlackholeAll()
	if err := roundTrip(c, "gone", 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after BlackholeAll: %v, want a read timeout", err)
	}
	// A new mapping works.
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := roundTrip(c2, "new", 5*time.Second); err != nil {
		t.Fatal(err)
	}
}
