//go:build vcan && linux

package socketcan

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
)

// setLinkUp sets or clears IFF_UP on iface with SIOCSIFFLAGS.
func setLinkUp(t *testing.T, iface string, up bool) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(iface)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		t.Fatalf("SIOCGIFFLAGS %s: %v", iface, err)
	}
	flags := ifr.Uint16()
	if up {
		flags |= unix.IFF_UP
	} else {
		flags &^= unix.IFF_UP
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		t.Fatalf("SIOCSIFFLAGS %s: %v", iface, err)
	}
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v: %s", args, err, out)
	}
}

// pump sends f on a fresh socket every 20ms until got yields it.
func pump(t *testing.T, iface string, f canbus.Frame, got <-chan canbus.Frame) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := Open(iface, Options{}); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = c.Send(ctx, f)
			cancel()
			c.Close()
		}
		select {
		case g := <-got:
			if g.ID == f.ID {
				return
			}
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("frame %#x never arrived through the Reopener", f.ID)
}

func TestVcanDownUpNotReady(t *testing.T) {
	rx := mustOpen(t, "vcan1", Options{})
	setLinkUp(t, "vcan1", false)
	t.Cleanup(func() { setLinkUp(t, "vcan1", true) })
	if _, err := recvTimeout(t, rx, 10*time.Second); !errors.Is(err, drivers.ErrNotReady) {
		t.Errorf("Receive() on a downed interface error = %v, want ErrNotReady", err)
	}
	if _, err := Open("vcan1", Options{}); !errors.Is(err, drivers.ErrNotReady) {
		t.Errorf("Open(down) error = %v, want ErrNotReady", err)
	}
}

func TestVcanReopenerSurvivesDownUpAndRecreate(t *testing.T) {
	r := Reopen("vcan1", Options{}, Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond})
	got := make(chan canbus.Frame, 16)
	done := make(chan error, 1)
	go func() { // stops when r is closed
		for {
			f, err := r.Receive(context.Background())
			if err != nil {
				done <- err
				return
			}
			got <- f
		}
	}()
	pump(t, "vcan1", canbus.Frame{ID: 1, Len: 1}, got)

	setLinkUp(t, "vcan1", false)
	time.Sleep(300 * time.Millisecond) // a few failed reopen attempts
	setLinkUp(t, "vcan1", true)
	pump(t, "vcan1", canbus.Frame{ID: 2, Len: 1}, got)
	if n := r.Opens(); n < 2 {
		t.Errorf("Opens() after down/up = %d, want ≥ 2", n)
	}

	if _, err := exec.LookPath("ip"); err != nil {
		t.Log("no ip command: skipping delete/recreate")
	} else {
		before := r.Opens()
		ip(t, "link", "del", "dev", "vcan1")
		time.Sleep(300 * time.Millisecond)
		ip(t, "link", "add", "dev", "vcan1", "type", "vcan")
		ip(t, "link", "set", "vcan1", "up")
		pump(t, "vcan1", canbus.Frame{ID: 3, Len: 1}, got)
		if n := r.Opens(); n <= before {
			t.Errorf("Opens() after recreate = %d, want > %d", n, before)
		}
	}

	if err := r.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Receive() after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("receiver goroutine did not stop after Close")
	}
}

func TestVcanOpenNonCANInterfaceIsFatal(t *testing.T) {
	_, err := Open("lo", Options{})
	var fe *drivers.FatalError
	if !errors.As(err, &fe) {
		t.Fatalf("Open(lo) error = %v, want *drivers.FatalError", err)
	}
}
