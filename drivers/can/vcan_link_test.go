//go:build vcan && linux

package can

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
	"github.com/tcu-agent/tcu-agent/drivers/drivertest"
	"github.com/tcu-agent/tcu-agent/drivers/socketcan"
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

// pumpSpeed sends POWERTRAIN frames with speed kmh on fresh vcan1 sockets
// until sink has a Vehicle.Speed sample of that value.
func pumpSpeed(t *testing.T, db *dbc.Database, sink *drivertest.Sink, kmh float64) {
	t.Helper()
	m, _ := db.Message("POWERTRAIN")
	data, err := m.Encode(map[string]float64{"VehicleSpeed": kmh, "Gear": 3, "IgnitionState": 2})
	if err != nil {
		t.Fatal(err)
	}
	f := canbus.Frame{ID: m.ID}
	f.Len = uint8(copy(f.Data[:], data))
	match := func(s drivers.Sample) bool { return s.Name == "Vehicle.Speed" && s.Value == kmh }
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if c, err := socketcan.Open("vcan1", socketcan.Options{}); err == nil {
			_ = c.Send(context.Background(), f)
			c.Close()
		}
		if _, ok := sink.Wait(50*time.Millisecond, match); ok {
			return
		}
	}
	t.Fatalf("Vehicle.Speed = %v never decoded from vcan1", kmh)
}

// TestVcanDriverRecoversAfterDownUp runs the driver under a minimal
// supervisor (retry on ErrNotReady, as the agent does): taking vcan1 down
// ends Run with ErrNotReady, and after the link comes back a new Run
// decodes again.
func TestVcanDriverRecoversAfterDownUp(t *testing.T) {
	db, _, err := dbc.Load(vehicleDBC)
	if err != nil {
		t.Fatal(err)
	}
	d := New(drivertest.Params(t))
	d.Interface, d.DBC, d.Signals = "vcan1", vehicleDBC, vehicleSignals()
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	sink := &drivertest.Sink{}
	ctx, cancel := context.WithCancel(context.Background())
	notReady := make(chan struct{}, 100)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() {
		for ctx.Err() == nil {
			err := d.Run(ctx, sink)
			switch {
			case err == nil:
			case errors.Is(err, drivers.ErrNotReady):
				notReady <- struct{}{}
			default:
				t.Errorf("Run() = %v, want nil or ErrNotReady", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	pumpSpeed(t, db, sink, 30)
	setLinkUp(t, "vcan1", false)
	t.Cleanup(func() { setLinkUp(t, "vcan1", true) })
	select {
	case <-notReady:
	case <-time.After(20 * time.Second):
		t.Fatal("Run() did not report ErrNotReady after vcan1 went down")
	}
	setLinkUp(t, "vcan1", true)
	pumpSpeed(t, db, sink, 40)
}
