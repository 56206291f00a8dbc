package gnss

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/gnss/nmeasim"
)

// collector is a Sink that records samples and signals each one.
type collector struct {
	mu      sync.Mutex
	samples []drivers.Sample
	ch      chan drivers.Sample
}

func newCollector() *collector { return &collector{ch: make(chan drivers.Sample, 4096)} }

func (c *collector) Emit(s drivers.Sample) {
	c.mu.Lock()
	c.samples = append(c.samples, s)
	c.mu.Unlock()
	select {
	case c.ch <- s:
	default:
	}
}

// waitFor returns the first sample named name, failing after 30 s.
func (c *collector) waitFor(t *testing.T, name string) drivers.Sample {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case s := <-c.ch:
			if s.Name == name {
				return s
			}
		case <-timeout:
			t.Fatalf("no %s sample within 30s", name)
		}
	}
}

func TestInit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(*Driver)
		wantErr string
	}{
		{"defaults with device", func(d *Driver) { d.Device = "/dev/ttyUSB0" }, ""},
		{"no device", func(*Driver) {}, "device: required"},
		{"bad min_fix", func(d *Driver) { d.Device = "x"; d.MinFix = "4d" }, "min_fix"},
		{"3D upper case", func(d *Driver) { d.Device = "x"; d.MinFix = "3D" }, ""},
		{"bad baud and hdop", func(d *Driver) { d.Device = "x"; d.Baud = 0; d.MaxHDOP = -1 }, "baud"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := New(drivers.Params{Name: "gnss"})
			tt.mutate(d)
			err := d.Init()
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Init() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestRegistered(t *testing.T) {
	t.Parallel()
	f, ok := drivers.Lookup("gnss")
	if !ok {
		t.Fatal(`driver kind "gnss" not registered`)
	}
	if _, ok := f(drivers.Params{}).(*Driver); !ok {
		t.Fatal("factory does not return *Driver")
	}
}

func TestGating(t *testing.T) {
	t.Parallel()
	fix2D := Fix{Mode: Mode2D, Status: StatusFix, HasPos: true, Lat: 1, Lon: 2, HasHDOP: true, HDOP: 1.5}
	fix3D := Fix{Mode: Mode3D, Status: StatusDGPS, HasPos: true, Lat: 1, Lon: 2, HasHDOP: true, HDOP: 4, HasAlt: true, Alt: 5, HasSpeed: true, Speed: 10}
	sim := fix3D
	sim.Status = StatusSimulated
	stale := fix2D
	stale.Status = StatusNoFix
	tests := []struct {
		name    string
		minFix  string
		maxHDOP float64
		invalid string
		fix     Fix
		wantPos bool
	}{
		{"simulated dropped", "2d", 0, "", sim, false},
		{"simulated flagged", "2d", 0, InvalidFlag, sim, true},
		{"no-fix status dropped", "2d", 0, "", stale, false},
		{"rtk float passes", "2d", 0, "", Fix{Mode: Mode3D, Status: StatusRTKFloat, HasPos: true}, true},
		{"2d passes 2d", "2d", 0, "", fix2D, true},
		{"2d fails 3d", "3d", 0, "", fix2D, false},
		{"3d passes 3d", "3d", 0, "", fix3D, true},
		{"hdop too high", "2d", 3, "", fix3D, false},
		{"hdop ok", "2d", 3, "", fix2D, true},
		{"unknown hdop with limit", "2d", 3, "", Fix{Mode: Mode3D, Status: StatusFix, HasPos: true}, false},
		{"no fix", "2d", 0, "", Fix{Mode: ModeNoFix}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := New(drivers.Params{Name: "gps"})
			d.Device, d.MinFix, d.MaxHDOP = "x", tt.minFix, tt.maxHDOP
			if tt.invalid != "" {
				d.InvalidFixes = tt.invalid
			}
			if err := d.Init(); err != nil {
				t.Fatal(err)
			}
			c := newCollector()
			d.emit(tt.fix, c)
			got := map[string]drivers.Sample{}
			for _, s := range c.samples {
				got[s.Name] = s
			}
			if _, ok := got[SignalLatitude]; ok != tt.wantPos {
				t.Errorf("latitude emitted = %v, want %v (samples %v)", ok, tt.wantPos, c.samples)
			}
			if s, ok := got[SignalFixStatus]; !ok || s.Value != float64(tt.fix.Status) || s.Label != tt.fix.Status.String() {
				t.Errorf("fix status sample = %+v, %v; want %v", s, ok, tt.fix.Status)
			}
			if s, ok := got[SignalFixType]; !ok || s.Value != float64(tt.fix.Mode) || s.Source != "gps" {
				t.Errorf("fix type sample = %+v", s)
			}
			if s, ok := got[SignalSpeed]; ok && s.Value != tt.fix.Speed*3.6 {
				t.Errorf("speed sample = %v km/h, want %v", s.Value, tt.fix.Speed*3.6)
			}
		})
	}
}

func TestClockSynced(t *testing.T) {
	t.Parallel()
	d := New(drivers.Params{})
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	d.now = func() time.Time { return now }
	if d.ClockSynced() {
		t.Fatal("ClockSynced() before any fix")
	}
	gnssT := time.Date(2026, 1, 1, 11, 59, 0, 0, time.UTC)
	d.emit(Fix{Mode: Mode3D, Time: gnssT, TimeValid: true}, newCollector())
	now = now.Add(2 * time.Second)
	if got, ok := d.GNSSTime(); !ok || !got.Equal(gnssT.Add(2*time.Second)) {
		t.Errorf("GNSSTime() = %v, %v; want %v", got, ok, gnssT.Add(2*time.Second))
	}
	now = now.Add(clockValidFor)
	if d.ClockSynced() {
		t.Error("ClockSynced() still true after 12 s without a valid time")
	}
}

// TestRunOverPTY feeds a real capture through a pseudo-terminal, then
// unplugs the "receiver" (closes the master), expects ErrNotReady, plugs
// a new one in at the same path (a symlink, like a udev name) and expects
// samples again.
func TestRunOverPTY(t *testing.T) {
	capture, err := os.ReadFile(filepath.Join("testdata", "gpsd", "neo-m8n.log"))
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "gps0")
	plug := func() *os.File {
		master, slave, err := nmeasim.OpenPTY()
		if err != nil {
			t.Skipf("no pty: %v", err)
		}
		os.Remove(link)
		if err := os.Symlink(slave, link); err != nil {
			t.Fatal(err)
		}
		return master
	}
	d := New(drivers.Params{Name: "gnss"})
	d.Device, d.Baud = link, 115200
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}

	for round := range 2 {
		master := plug()
		c := newCollector()
		errc := make(chan error, 1)
		go func() { errc <- d.Run(context.Background(), c) }()
		go func() { _, _ = master.Write(capture) }() // ends when master closes

		lat := c.waitFor(t, SignalLatitude)
		if lat.Value < 44.0689 || lat.Value > 44.0691 {
			t.Errorf("round %d: latitude %v, want ≈44.069", round, lat.Value)
		}
		c.waitFor(t, SignalTimestamp)
		if st := d.Stats(); st.Frames == 0 || st.Fixes == 0 || st.Fixes > st.Frames {
			t.Errorf("round %d: Stats() = %+v, want sentences and fixes counted", round, st)
		}
		if !d.ClockSynced() {
			t.Errorf("round %d: ClockSynced() false after a valid RMC", round)
		}
		master.Close() // unplug
		select {
		case err := <-errc:
			if !errors.Is(err, drivers.ErrNotReady) {
				t.Fatalf("round %d: Run() after unplug = %v, want ErrNotReady", round, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: Run did not return after unplug", round)
		}
	}

	os.Remove(link)
	if err := d.Run(context.Background(), newCollector()); !errors.Is(err, drivers.ErrNotReady) {
		t.Errorf("Run() with the device absent = %v, want ErrNotReady", err)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	t.Parallel()
	master, slave, err := nmeasim.OpenPTY()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer master.Close()
	d := New(drivers.Params{})
	d.Device = slave
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx, newCollector()) }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Run() after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of cancel")
	}
}
