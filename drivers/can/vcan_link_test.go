//go:build vcan && linux

package can

import (
	"context"
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

// TestVcanDriverRecoversAfterDownUp: taking vcan1 down does not end Run;
// the driver reopens the socket itself, so after the link comes back a
// command frame sent at once goes out (issue 13 item 6) and decoding
// resumes.
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
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() {
		if err := d.Run(ctx, sink); err != nil {
			t.Errorf("Run() = %v, want nil (the link is reopened inside Run)", err)
		}
	})
	pumpSpeed(t, db, sink, 30)
	setLinkUp(t, "vcan1", false)
	t.Cleanup(func() { setLinkUp(t, "vcan1", true) })
	waitFor(t, func() bool { return d.Stats().Connected == 0 })
	time.Sleep(3 * canbus.RedialMax) // several failed reopens

	if c, err := socketcan.Open("vcan1", socketcan.Options{}); err == nil {
		_ = c.Close()
		t.Fatal("opened vcan1 while it is down")
	}
	setLinkUp(t, "vcan1", true)
	back := time.Now()
	listener, err := socketcan.Open("vcan1", socketcan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	if err := d.Transmit(ctx, "BODY_COMMAND", map[string]float64{"LockRequest": 1}); err != nil {
		t.Fatalf("Transmit() right after vcan1 came back = %v", err)
	}
	ready := time.Since(back)
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	if f, err := listener.Receive(rctx); err != nil || f.ID != 0x121 {
		t.Fatalf("frame on vcan1 = %03X, %v; want BODY_COMMAND (0x121)", f.ID, err)
	}
	t.Logf("transmitter ready %v after vcan1 came back", ready)
	pumpSpeed(t, db, sink, 40)
	if st := d.Stats(); st.Reconnects < 1 {
		t.Errorf("Stats() = %+v, want a reconnect", st)
	}
}
