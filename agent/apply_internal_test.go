package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/config"
	"github.com/tcu-agent/tcu-agent/agent/metrics"
	"github.com/tcu-agent/tcu-agent/agent/telemetry"
	"github.com/tcu-agent/tcu-agent/drivers"
)

// fakeSerial is a device that, like a serial port opened with TIOCEXCL,
// cannot be opened while it is open. Devices named "missing..." never open.
type fakeSerial struct {
	mu      sync.Mutex
	open    map[string]bool
	doubled atomic.Int32 // opens refused because the device was open
}

var serials = &fakeSerial{open: map[string]bool{}}

func (f *fakeSerial) acquire(dev string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if strings.HasPrefix(dev, "missing") {
		return fmt.Errorf("open %s: %w: no such device", dev, drivers.ErrNotReady)
	}
	if f.open[dev] {
		f.doubled.Add(1)
		return fmt.Errorf("open %s: %w: device busy", dev, drivers.ErrNotReady)
	}
	f.open[dev] = true
	return nil
}

func (f *fakeSerial) release(dev string) {
	f.mu.Lock()
	delete(f.open, dev)
	f.mu.Unlock()
}

// serialDriver emits "<name>.value" every 5 ms from its device; it
// transmits only while running.
type serialDriver struct {
	running   atomic.Bool
	sent      atomic.Int32
	name      string
	Device    string  `toml:"device"`
	Value     float64 `toml:"value"`
	Exclusive bool    `toml:"exclusive"`
}

func (d *serialDriver) Init() error {
	if d.Device == "" {
		return errors.New("device: required")
	}
	return nil
}

func (d *serialDriver) ExclusiveDevice() bool { return d.Exclusive }

func (d *serialDriver) Run(ctx context.Context, sink drivers.Sink) error {
	if err := serials.acquire(d.Device); err != nil {
		return err
	}
	defer serials.release(d.Device)
	d.running.Store(true)
	defer d.running.Store(false)
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			sink.Emit(drivers.Sample{Name: d.name + ".value", Value: d.Value, Time: now, Source: d.name})
		}
	}
}

func (d *serialDriver) Transmit(context.Context, string, map[string]float64) error {
	if !d.running.Load() {
		return errors.New("transmit: device not open")
	}
	d.sent.Add(1)
	return nil
}

func (a *Agent) driverNamed(t *testing.T, name string) *serialDriver {
	t.Helper()
	for _, s := range a.supervisors() {
		if s.name == name {
			return s.drv.(*serialDriver)
		}
	}
	t.Fatalf("no driver %s", name)
	return nil
}

func init() {
	drivers.Register("hotapply_test", func(p drivers.Params) drivers.Driver { return &serialDriver{name: p.Name} })
}

type applyFixture struct {
	t    *testing.T
	a    *Agent
	path string
	done chan error
	stop context.CancelFunc
}

func driverTable(name, dev string, value float64, excl bool) string {
	return fmt.Sprintf("\n[[driver]]\nname = %q\nkind = \"hotapply_test\"\ndevice = %q\nvalue = %v\nexclusive = %v\n", name, dev, value, excl)
}

func baseConfig(dir string) string {
	return fmt.Sprintf(`version = 1
[agent]
thing_name = "hotapply"
state_dir = %q
[health]
ctl_socket = ""
[telemetry]
interval = "100ms"
[mqtt]
broker = "tcp://127.0.0.1:1"
allow_plaintext = true
`, filepath.Join(dir, "state"))
}

func startFixture(t *testing.T, text string) *applyFixture {
	t.Helper()
	dir := t.TempDir()
	f := &applyFixture{t: t, path: filepath.Join(dir, "tcu-agent.toml"), done: make(chan error, 1)}
	f.write(strings.ReplaceAll(text, "@DIR@", dir))
	cfg, sec, err := LoadConfig(f.path)
	if err != nil {
		t.Fatal(err)
	}
	f.a, err = New(Options{Config: cfg, Sections: sec})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.stop = cancel
	go func() { f.done <- f.a.Run(ctx) }() // stopped by f.close
	t.Cleanup(f.close)
	f.waitValue("gnss.value", 1)
	return f
}

func (f *applyFixture) write(text string) {
	f.t.Helper()
	if err := os.WriteFile(f.path, []byte(text), 0o600); err != nil {
		f.t.Fatal(err)
	}
}

func (f *applyFixture) close() {
	f.stop()
	select {
	case err := <-f.done:
		if err != nil {
			f.t.Errorf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		f.t.Error("Run did not stop")
	}
}

// load writes text (with @DIR@ as the config's directory) and loads it.
func (f *applyFixture) load(text string) *config.Config {
	f.t.Helper()
	f.write(strings.ReplaceAll(text, "@DIR@", filepath.Dir(f.path)))
	cfg, _, err := LoadConfig(f.path)
	if err != nil {
		f.t.Fatal(err)
	}
	return cfg
}

// waitValue waits until the latest sample of name was taken after the
// call and has value v.
func (f *applyFixture) waitValue(name string, v float64) {
	f.t.Helper()
	since := time.Now()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s, ok := f.a.signals.Latest(name); ok && s.Value == v && s.Time.After(since) {
			return
		}
		if time.Now().After(deadline) {
			s, _ := f.a.signals.Latest(name)
			f.t.Fatalf("no fresh %s = %v within 10 s (latest %+v)", name, v, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func metricsText(t *testing.T, a *Agent) string {
	t.Helper()
	r := metrics.New()
	a.applyMetrics(r)
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestApplySerialBreakBeforeMake: a driver on a device that opens only once
// is closed before its successor opens it (never two opens), the capture
// gap is measured and counted; a successor that cannot open its device
// fails the apply and the old driver is restored.
func TestApplySerialBreakBeforeMake(t *testing.T) {
	base := baseConfig("@DIR@")
	f := startFixture(t, base+driverTable("gnss", "ttyS0", 1, true)+driverTable("can", "can0", 1, false))
	swaps := 0
	f.a.OnCaptureSwap(func() { swaps++ })
	doubled := serials.doubled.Load()
	// A transmitter taken before the apply (a command in flight) sends on
	// the new driver after it.
	tx, ok := f.a.transmitter("can")
	if !ok {
		t.Fatal("no transmitter for can")
	}
	oldCan := f.a.driverNamed(t, "can")

	// Both drivers change: the serial one is closed first, the other is
	// replaced make-before-break (its device is not exclusive but its
	// name is distinct, so it is not busy either).
	res, err := f.a.ApplyConfig(t.Context(), f.load(base+driverTable("gnss", "ttyS0", 2, true)+driverTable("can", "can0b", 2, false)), f.path)
	if err != nil || !res.Live {
		t.Fatalf("apply: %+v, %v", res, err)
	}
	f.waitValue("gnss.value", 2)
	f.waitValue("can.value", 2)
	if n := serials.doubled.Load() - doubled; n != 0 {
		t.Errorf("the serial device was opened while open %d times", n)
	}
	if err := tx.Transmit(t.Context(), "M", nil); err != nil {
		t.Errorf("transmit after the apply: %v", err)
	}
	if newCan := f.a.driverNamed(t, "can"); newCan == oldCan || newCan.sent.Load() != 1 || oldCan.sent.Load() != 0 {
		t.Errorf("the frame did not go out on the new driver: new %d, old %d", newCan.sent.Load(), oldCan.sent.Load())
	}
	if res.Gap <= 0 || res.Gap > 2*time.Second {
		t.Errorf("Gap = %v, want > 0 (the device is closed first) and ≤ 2 s", res.Gap)
	}
	t.Logf("break-before-make gap %v", res.Gap)
	if swaps != 1 {
		t.Errorf("OnCaptureSwap hooks ran %d times, want 1", swaps)
	}

	// A successor whose device does not open: an error after readyWait,
	// the old serial driver restored.
	cfg := f.load(base + driverTable("gnss", "missing0", 3, true) + driverTable("can", "can0b", 2, false))
	start := time.Now()
	res, err = f.a.ApplyConfig(t.Context(), cfg, f.path)
	if err == nil || res.Live || !strings.Contains(err.Error(), `"gnss"`) {
		t.Fatalf("apply with a missing device: %+v, %v", res, err)
	}
	t.Logf("failed apply after %v: %v (gap while restoring %v)", time.Since(start).Round(time.Millisecond), err, res.Gap)
	f.waitValue("gnss.value", 2)
	f.waitValue("can.value", 2)
	if swaps != 1 {
		t.Errorf("OnCaptureSwap hooks ran %d times after a failed apply, want 1", swaps)
	}
	if n := serials.doubled.Load() - doubled; n != 0 {
		t.Errorf("the serial device was opened while open %d times", n)
	}
	if f.a.driverNamed(t, "gnss").Device != "ttyS0" {
		t.Error("the gnss driver is not the restored one")
	}

	m := metricsText(t, f.a)
	for _, want := range []string{`tcu_config_applies_total{result="live"} 1`, `tcu_config_applies_total{result="failed"} 1`,
		`tcu_config_applies_total{result="restart"} 0`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, m)
		}
	}
	if !strings.Contains(m, "tcu_config_apply_gap_seconds ") {
		t.Errorf("no gap gauge:\n%s", m)
	}
}

// TestApplyRacesShutdown: an apply waiting for a driver that does not come
// up is abandoned when Run stops, and Run stops promptly; ApplyConfig after
// Run returned is ErrNotRunning. Concurrent applies are serialised.
func TestApplyRacesShutdown(t *testing.T) {
	base := baseConfig("@DIR@")
	f := startFixture(t, base+driverTable("gnss", "ttyS1", 1, true))
	cfgs := []*config.Config{
		f.load(base + driverTable("gnss", "ttyS1", 4, true)),
		f.load(base + driverTable("gnss", "missing1", 5, true)),
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(cfgs))
	for _, c := range cfgs {
		wg.Go(func() {
			_, err := f.a.ApplyConfig(context.Background(), c, f.path)
			errs <- err
		})
	}
	time.Sleep(200 * time.Millisecond) // one apply is waiting for missing1 or about to
	stopped := time.Now()
	f.stop()
	select {
	case err := <-f.done:
		f.done <- err // for close
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop while an apply was in progress")
	}
	t.Logf("Run stopped %v after cancel with an apply in progress", time.Since(stopped).Round(time.Millisecond))
	wg.Wait()
	close(errs)
	var failed int
	for err := range errs {
		if err != nil {
			failed++
		}
	}
	if failed == 0 {
		t.Error("the apply of a device that never opens succeeded")
	}
	if _, err := f.a.ApplyConfig(context.Background(), cfgs[0], f.path); !errors.Is(err, ErrNotRunning) {
		t.Errorf("ApplyConfig after Run: %v, want ErrNotRunning", err)
	}
}

// TestRestartSections: which changes need a restart.
func TestRestartSections(t *testing.T) {
	dir := t.TempDir()
	base := baseConfig(dir) + driverTable("gnss", "ttyS9", 1, true)
	load := func(text string) (*config.Config, *Sections) {
		t.Helper()
		p := filepath.Join(dir, "x.toml")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		c, s, err := LoadConfig(p)
		if err != nil {
			t.Fatal(err)
		}
		return c, s
	}
	oc, os_ := load(base)
	tests := []struct {
		name string
		edit func(string) string
		want string
	}{
		{"same", func(s string) string { return s }, ""},
		{"log level", func(s string) string { return strings.Replace(s, "[agent]\n", "[agent]\nlog_level = \"debug\"\n", 1) }, ""},
		{"telemetry interval and events", func(s string) string {
			return strings.Replace(s, `interval = "100ms"`, "interval = \"2s\"\nevents = [\"gnss.value\"]", 1)
		}, ""},
		{"drivers", func(s string) string { return s + driverTable("can", "can0", 1, false) }, ""},
		{"max_pending", func(s string) string {
			return strings.Replace(s, "[telemetry]\n", "[telemetry]\nmax_pending = 50\n", 1)
		}, "telemetry"},
		{"log format", func(s string) string { return strings.Replace(s, "[agent]\n", "[agent]\nlog_format = \"json\"\n", 1) }, "agent"},
		{"buffer", func(s string) string { return s + "[buffer]\nmax_bytes = \"8MiB\"\n" + "" }, "buffer"},
		{"health", func(s string) string { return strings.Replace(s, `ctl_socket = ""`, `ctl_socket = "/tmp/x.sock"`, 1) }, "health"},
		{"mqtt", func(s string) string {
			return strings.Replace(s, "allow_plaintext = true\n", "allow_plaintext = true\nbatch_latency = \"3s\"\n", 1)
		}, "mqtt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, s := load(tc.edit(base))
			if got := strings.Join(RestartSections(oc, os_, c, s), ","); got != tc.want {
				t.Errorf("RestartSections = %q, want %q", got, tc.want)
			}
		})
	}
}

// BenchmarkEmitPath: a sample through a driver's gate and the router, and
// straight into the pipeline (what drivers did before), from parallel
// drivers.
func BenchmarkEmitPath(b *testing.B) {
	for _, via := range []string{"pipeline", "gate"} {
		b.Run(via, func(b *testing.B) {
			p, err := telemetry.New(telemetry.Options{Interval: time.Hour, MaxPending: 1 << 16,
				Append: func(context.Context, telemetry.Class, [][]byte) error { return nil }})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = p.Run(ctx) }()
			var r router
			var sink drivers.Sink = p
			if via == "gate" {
				g := newGate(&r)
				r.set(p, map[*gate]bool{g: true})
				sink = g
			}
			s := drivers.Sample{Name: "Vehicle.Speed", Value: 1, Time: time.Now()}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					sink.Emit(s)
				}
			})
			b.StopTimer()
			cancel()
			<-done
		})
	}
}
