package canbus

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func frame(id uint32, data ...byte) Frame {
	f := Frame{ID: id, Len: uint8(len(data))}
	copy(f.Data[:], data)
	return f
}

func TestVirtualDeliversToOthersNotSender(t *testing.T) {
	t.Parallel()
	v := NewVirtual()
	a, b, c := v.Attach(), v.Attach(), v.Attach()
	defer a.Close()
	defer b.Close()
	defer c.Close()
	ctx := context.Background()
	want := frame(0x120, 1, 2, 3)
	if err := a.Send(ctx, want); err != nil {
		t.Fatal(err)
	}
	for _, ep := range []*Endpoint{b, c} {
		got, err := ep.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.Time.IsZero() {
			t.Error("received frame has no timestamp")
		}
		if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Frame{}, "Time")); diff != "" {
			t.Errorf("Receive() mismatch (-want +got):\n%s", diff)
		}
	}
	if _, ok := a.tryReceive(); ok {
		t.Error("sender received its own frame")
	}
}

func TestVirtualFullQueueDropsWithoutBlocking(t *testing.T) {
	t.Parallel()
	v := NewVirtualSize(4)
	a, b := v.Attach(), v.Attach()
	defer a.Close()
	defer b.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 10 {
			if err := a.Send(context.Background(), frame(uint32(i))); err != nil {
				t.Error(err)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Send blocked on a full receiver")
	}
	if got := b.Dropped(); got != 6 {
		t.Errorf("Dropped() = %d, want 6", got)
	}
	for i := range 4 {
		f, err := b.Receive(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if f.ID != uint32(i) {
			t.Errorf("frame %d has id %d: queue is not FIFO", i, f.ID)
		}
	}
}

func TestVirtualCloseUnblocksReceive(t *testing.T) {
	t.Parallel()
	v := NewVirtual()
	a := v.Attach()
	errc := make(chan error, 1)
	go func() {
		_, err := a.Receive(context.Background())
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Receive after Close = %v, want net.ErrClosed", err)
	}
	if err := a.Send(context.Background(), frame(1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Send after Close = %v, want net.ErrClosed", err)
	}
	if n := v.Endpoints(); n != 0 {
		t.Errorf("Endpoints() after Close = %d, want 0", n)
	}
}

func TestVirtualReceiveHonoursContext(t *testing.T) {
	t.Parallel()
	v := NewVirtual()
	a := v.Attach()
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := a.Receive(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Receive() = %v, want DeadlineExceeded", err)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		f    Frame
		ok   bool
	}{
		{"standard", Frame{ID: 0x7FF, Len: 8}, true},
		{"standard id too big", Frame{ID: 0x800}, false},
		{"extended", Frame{ID: 0x1FFFFFFF, Extended: true}, true},
		{"extended id too big", Frame{ID: 0x20000000, Extended: true}, false},
		{"classic too long", Frame{ID: 1, Len: 9}, false},
		{"fd 64", Frame{ID: 1, FD: true, Len: 64}, true},
		{"fd 12", Frame{ID: 1, FD: true, Len: 12}, true},
		{"fd 9 invalid", Frame{ID: 1, FD: true, Len: 9}, false},
		{"fd 65 invalid", Frame{ID: 1, FD: true, Len: 65}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.f.Validate()
			if (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidFrame) {
				t.Errorf("Validate() = %v, want ErrInvalidFrame", err)
			}
		})
	}
}
