//go:build linux

package can

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/canmap"
	"github.com/tcu-agent/tcu-agent/drivers/drivertest"
)

const benchDBC = "testdata/bench.dbc"

// benchSignals maps all 20 signals of BENCH.
func benchSignals() []canmap.Signal {
	names := []string{"Counter", "Temp", "PressureBE", "TorqueBE"}
	for i := range 8 {
		names = append(names, fmt.Sprintf("Flag%d", i))
	}
	for i := range 4 {
		names = append(names, fmt.Sprintf("Mode%d", i), fmt.Sprintf("Level%d", i))
	}
	sigs := make([]canmap.Signal, 0, len(names))
	for _, n := range names {
		sigs = append(sigs, canmap.Signal{Name: "Bench." + n, Source: "BENCH." + n})
	}
	return sigs
}

// benchFrame is the i-th BENCH frame: the counter byte changes every frame
// and the other bytes every 16th, so each frame yields 1-20 samples.
func benchFrame(i int) canbus.Frame {
	f := canbus.Frame{ID: 512, Len: 8}
	slow := byte(i / 16)
	for k := range 8 {
		f.Data[k] = slow * byte(k+1)
	}
	f.Data[4] = byte(i)
	return f
}

// replayBus is a canbus.Bus that returns n frames from a ring, then blocks
// until closed.
type replayBus struct {
	frames  []canbus.Frame
	n, i    int
	drained chan struct{} // closed when the n-th frame has been returned
	done    chan struct{}
	once    sync.Once
}

func (r *replayBus) Send(context.Context, canbus.Frame) error { return nil }

func (r *replayBus) Receive(ctx context.Context) (canbus.Frame, error) {
	if r.i < r.n {
		f := r.frames[r.i%len(r.frames)]
		r.i++
		return f, nil
	}
	if r.i == r.n {
		r.i++
		close(r.drained)
	}
	<-r.done
	return canbus.Frame{}, net.ErrClosed
}

func (r *replayBus) Close() error { r.once.Do(func() { close(r.done) }); return nil }

// BenchmarkDriverDecode20 measures one frame of a 20-signal message through
// the driver's read loop: Receive, lookup, decode, policy, Emit.
func BenchmarkDriverDecode20(b *testing.B) {
	frames := make([]canbus.Frame, 256)
	now := time.Now()
	for i := range frames {
		frames[i] = benchFrame(i)
		frames[i].Time = now.Add(time.Duration(i) * time.Millisecond)
	}
	d := New(drivertest.Params(nil))
	d.Transport, d.Address, d.DBC, d.Signals = TransportVBus, "unused", benchDBC, benchSignals()
	bus := &replayBus{frames: frames, n: b.N, drained: make(chan struct{}), done: make(chan struct{})}
	d.Open = func(context.Context) (canbus.Bus, error) { return bus, nil }
	if err := d.Init(); err != nil {
		b.Fatal(err)
	}
	var samples atomic.Int64
	sink := drivers.SinkFunc(func(drivers.Sample) { samples.Add(1) })
	ctx, cancel := context.WithCancel(context.Background())
	b.ReportAllocs()
	c0 := cpuTime()
	b.ResetTimer()
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx, sink) }()
	<-bus.drained
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/frame")
	cancel()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(samples.Load())/float64(b.N), "samples/frame")
}

// BenchmarkDecoderDecode20 is the decode+sample step alone.
func BenchmarkDecoderDecode20(b *testing.B) {
	d := New(drivertest.Params(nil))
	d.Transport, d.Address, d.DBC, d.Signals = TransportVBus, "unused", benchDBC, benchSignals()
	if err := d.Init(); err != nil {
		b.Fatal(err)
	}
	frames := make([]canbus.Frame, 256)
	now := time.Now()
	for i := range frames {
		frames[i] = benchFrame(i)
		frames[i].Time = now.Add(time.Duration(i) * time.Millisecond)
	}
	var n int
	sink := drivers.SinkFunc(func(drivers.Sample) { n++ })
	runtime.LockOSThread() // so RUSAGE_THREAD is this loop's CPU time
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	c0 := threadCPU()
	for i := 0; b.Loop(); i++ {
		d.dec.Decode(&frames[i&255], sink)
	}
	b.ReportMetric(float64(threadCPU()-c0)/float64(b.N), "cpu-ns/frame")
	b.ReportMetric(float64(n)/float64(b.N), "samples/frame")
}

// Ingest benchmark: a child process (this test binary, re-executed) serves
// virtual buses and fills each with frames at a fixed rate, as tcu-sim
// would; this process runs one can driver per bus and measures its own CPU
// time with getrusage.

const genEnv = "TCU_CAN_INGEST_GENERATOR" // "rate;sock1,sock2"

// asGenerator runs the generator when this test binary was started as one.
func asGenerator() (code int, ok bool) {
	spec := os.Getenv(genEnv)
	if spec == "" {
		return 0, false
	}
	return runGenerator(spec), true
}

// runGenerator serves one virtual bus per socket and sends BENCH frames at
// rate frames/s on each, until killed (or after a minute).
func runGenerator(spec string) int {
	rateS, socks, _ := strings.Cut(spec, ";")
	rate, err := strconv.Atoi(rateS)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for _, sock := range strings.Split(socks, ",") {
		l, err := net.Listen("unix", sock)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		v := canbus.NewVirtual()
		ep := v.Attach()
		wg.Go(func() { _ = canbus.Serve(ctx, l, v) })
		wg.Go(func() { pace(ctx, ep, rate) })
	}
	wg.Wait()
	return 0
}

// pace sends rate frames per second on ep in 1 ms batches.
func pace(ctx context.Context, ep *canbus.Endpoint, rate int) {
	start := time.Now()
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	sent := 0
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			due := int(now.Sub(start).Seconds() * float64(rate))
			for ; sent < due; sent++ {
				_ = ep.Send(ctx, benchFrame(sent))
			}
		}
	}
}

func threadCPU() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIngestTwoFullBuses ingests two fully loaded 1 Mbit/s buses'
// worth of 20-signal frames (2 x 8,700 frames/s) for 5 s. Run with
// -benchtime=1x: the duration is fixed.
func BenchmarkIngestTwoFullBuses(b *testing.B) {
	const rate, dur = 8700, 5 * time.Second
	dir, err := os.MkdirTemp("", "ingest")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	socks := []string{filepath.Join(dir, "bus0.sock"), filepath.Join(dir, "bus1.sock")}
	gen := exec.Command(os.Args[0], "-test.run=^$")
	gen.Env = append(os.Environ(), genEnv+"="+strconv.Itoa(rate)+";"+strings.Join(socks, ","))
	gen.Stderr = os.Stderr
	if err := gen.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = gen.Process.Kill(); _ = gen.Wait() }()
	for _, s := range socks {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(s); err == nil {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("generator did not serve", s)
			}
		}
	}
	var samples atomic.Int64
	sink := drivers.SinkFunc(func(drivers.Sample) { samples.Add(1) })
	ds := make([]*Driver, len(socks))
	for i, s := range socks {
		ds[i] = New(drivertest.Params(nil))
		ds[i].Transport, ds[i].Address, ds[i].DBC, ds[i].Signals = TransportVBus, s, benchDBC, benchSignals()
		if err := ds[i].Init(); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, d := range ds {
		wg.Go(func() {
			if err := d.Run(ctx, sink); err != nil {
				b.Error(err)
			}
		})
	}
	time.Sleep(time.Second) // warm up
	var f0 uint64
	for _, d := range ds {
		f0 += d.Stats().Frames
	}
	c0, t0 := cpuTime(), time.Now()
	b.ResetTimer()
	time.Sleep(dur)
	b.StopTimer()
	c1, el := cpuTime(), time.Since(t0)
	var f1, drops uint64
	for _, d := range ds {
		st := d.Stats()
		f1 += st.Frames
		drops += st.Drops
	}
	cancel()
	wg.Wait()
	b.ReportMetric(float64(f1-f0)/el.Seconds(), "frames/s")
	b.ReportMetric(float64((c1-c0).Milliseconds())/el.Seconds(), "cpu-ms/s")
	b.ReportMetric(float64(drops), "drops")
	b.ReportMetric(float64(samples.Load())/float64(f1), "samples/frame")
}
