package canbus

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// serveTemp serves v on a unix socket in a temporary directory until the
// test ends and returns the socket path.
func serveTemp(t *testing.T, v *Virtual) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vbus.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Serve(ctx, l, v) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Serve() = %v, want nil after cancel", err)
		}
	})
	return path
}

func waitEndpoints(t *testing.T, v *Virtual, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for v.Endpoints() != n {
		if time.Now().After(deadline) {
			t.Fatalf("bus has %d endpoints, want %d", v.Endpoints(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBridgeBetweenProcessesAndLocalEndpoint(t *testing.T) {
	t.Parallel()
	v := NewVirtual()
	path := serveTemp(t, v)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	local := v.Attach()
	defer local.Close()
	c1, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := Dial(ctx, "unix:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	waitEndpoints(t, v, 3)

	ignoreTime := cmpopts.IgnoreFields(Frame{}, "Time")
	sent := Frame{ID: 0x121, Len: 8, Data: [64]byte{1, 0, 7}}
	if err := c1.Send(ctx, sent); err != nil {
		t.Fatal(err)
	}
	for name, bus := range map[string]Bus{"local": local, "c2": c2} {
		got, err := bus.Receive(ctx)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(sent, got, ignoreTime); diff != "" {
			t.Errorf("%s Receive() mismatch (-want +got):\n%s", name, diff)
		}
		if got.Time.IsZero() {
			t.Errorf("%s: frame lost its bus timestamp", name)
		}
	}
	back := Frame{ID: 0x1ABCDEF, Extended: true, FD: true, Len: 12}
	if err := local.Send(ctx, back); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Conn{c1, c2} {
		got, err := c.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(back, got, ignoreTime); diff != "" {
			t.Errorf("Receive() mismatch (-want +got):\n%s", diff)
		}
	}
}

func TestBridgeCloseAndPeerLoss(t *testing.T) {
	t.Parallel()
	v := NewVirtual()
	path := filepath.Join(t.TempDir(), "vbus.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Serve(ctx, l, v) }()
	c, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	waitEndpoints(t, v, 1)
	cancel() // the server goes away
	if err := <-errc; err != nil {
		t.Errorf("Serve() = %v", err)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	if _, err := c.Receive(rctx); !errors.Is(err, io.EOF) {
		t.Errorf("Receive after server stop = %v, want io.EOF", err)
	}
	c.Close()
	if _, err := c.Receive(rctx); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Receive after Close = %v, want net.ErrClosed", err)
	}
	if _, err := Dial(rctx, path); err == nil {
		t.Error("Dial to a stopped server succeeded")
	}
}

func TestBridgeDropsMalformedPeer(t *testing.T) {
	t.Parallel()
	v := NewVirtual()
	path := serveTemp(t, v)
	tests := []struct {
		name string
		send []byte
	}{
		{"bad hello", []byte("notCANv1")},
		{"bad record after hello", append([]byte(wireHello), 3, 0xFF, 0xFF, 0xFF)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tt.send); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil {
				t.Errorf("read until the server hangs up: %v", err)
			}
			if string(got) != wireHello {
				t.Errorf("server sent %q, want its hello then EOF", got)
			}
			waitEndpoints(t, v, 0)
		})
	}
}

func TestDialRefusesNonBridge(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "other.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\n\r\n")
		_, _ = io.Copy(io.Discard, c)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Dial(ctx, path); !errors.Is(err, ErrBadWire) {
		t.Errorf("Dial() to a non-bridge = %v, want ErrBadWire", err)
	}
}

func TestServeRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	if err := checkLocal(&net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}); err == nil {
		t.Error("checkLocal accepted 10.0.0.1")
	}
	if err := checkLocal(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}); err != nil {
		t.Errorf("checkLocal(127.0.0.1) = %v", err)
	}
}

// TestConnReceiveBatchAndContext: frames sent in a burst arrive in few
// batches (the served side coalesces them), in order; a Receive ended by
// its context leaves the connection usable.
func TestConnReceiveBatchAndContext(t *testing.T) {
	t.Parallel()
	v := NewVirtual()
	path := serveTemp(t, v)
	ctx := context.Background()
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitEndpoints(t, v, 1)
	ep := v.Attach()
	defer ep.Close()

	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := c.Receive(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive() on a quiet bus = %v, want DeadlineExceeded", err)
	}

	const n = 500
	for i := range n {
		if err := ep.Send(ctx, frame(uint32(i%0x7FF), byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	fs := make([]Frame, 64)
	got, calls := 0, 0
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	for got < n {
		k, err := c.ReceiveBatch(rctx, fs)
		if err != nil {
			t.Fatalf("ReceiveBatch() after %d frames = %v", got, err)
		}
		for _, f := range fs[:k] {
			if f.ID != uint32(got%0x7FF) || f.Data[0] != byte(got) {
				t.Fatalf("frame %d = %03X#%X, out of order", got, f.ID, f.Payload())
			}
			got++
		}
		calls++
	}
	// 500 frames in at most ceil(500/64)=8 full batches plus partial ones;
	// one call per frame would mean no batching at all.
	if calls > n/4 {
		t.Errorf("%d frames took %d ReceiveBatch calls: not batched", n, calls)
	}
}

// TestConnSurvivesStaleDeadline: a read deadline left in the past by an
// earlier call's cancellation must not end the connection for the next
// caller.
func TestConnSurvivesStaleDeadline(t *testing.T) {
	t.Parallel()
	v := NewVirtual()
	path := serveTemp(t, v)
	ctx := context.Background()
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitEndpoints(t, v, 1)
	ep := v.Attach()
	defer ep.Close()
	_ = c.c.SetReadDeadline(aLongTimeAgo) // as a late cancellation hook would
	if err := ep.Send(ctx, frame(0x55, 1)); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	f, err := c.Receive(rctx)
	if err != nil || f.ID != 0x55 {
		t.Fatalf("Receive() after a stale deadline = %03X, %v", f.ID, err)
	}
}
