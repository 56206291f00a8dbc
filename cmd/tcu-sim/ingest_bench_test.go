package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/signals"
	"github.com/tcu-agent/tcu-agent/agent/telemetry"
	"github.com/tcu-agent/tcu-agent/buffer"
	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/can"
	"github.com/tcu-agent/tcu-agent/drivers/canmap"
)

// asSimEnv makes the test binary run as tcu-sim with these
// (space-separated) arguments: the ingest benchmark's bus generators run
// in their own processes so that their CPU time is not counted.
const asSimEnv = "TCU_SIM_AS_MAIN"

func runAsSim(args string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return run(ctx, strings.Fields(args), os.Stderr)
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIngestEndToEnd measures the agent's whole ingest path for two
// saturated 1 Mbit/s buses served by two tcu-sim processes (highway drive
// plus filler load to 100 %): virtual-bus socket read, DBC decode of every
// signal (unmapped = emit), sampling, the telemetry pipeline with the live
// signal table, and appends to a real Badger queue. CPU is this process's
// getrusage over a fixed window; run with -benchtime=1x.
func BenchmarkIngestEndToEnd(b *testing.B) {
	const window = 5 * time.Second
	dir := b.TempDir()
	var socks []string
	var gens []*exec.Cmd
	for i := range 2 {
		sock := filepath.Join(dir, fmt.Sprintf("bus%d.sock", i))
		socks = append(socks, sock)
		gen := exec.Command(os.Args[0], "-test.run=^$")
		gen.Env = append(os.Environ(), asSimEnv+"="+fmt.Sprintf("--vbus %s --scenario highway --load 100 --bitrate 1000000 --seed %d", sock, i+1))
		gen.Stderr = nil
		if err := gen.Start(); err != nil {
			b.Fatal(err)
		}
		gens = append(gens, gen)
	}
	defer func() {
		for _, g := range gens {
			_ = g.Process.Signal(syscall.SIGTERM)
			_ = g.Wait()
		}
	}()
	for _, s := range socks {
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(s); err == nil {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("tcu-sim did not serve", s)
			}
		}
	}
	q, err := buffer.Open(buffer.Options{Dir: filepath.Join(dir, "queue")})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	live := signals.New()
	var nSamples atomic.Uint64
	observe := func(s drivers.Sample) { nSamples.Add(1); live.Set(s) }
	pipe, err := telemetry.New(telemetry.Options{
		Interval: time.Second, MaxPending: 16384, Observe: observe,
		Append: func(ctx context.Context, c telemetry.Class, data [][]byte) error {
			class := buffer.ClassTelemetry
			if c == telemetry.ClassEvent {
				class = buffer.ClassEvent
			}
			_, err := q.AppendBatch(ctx, class, data)
			return err
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = pipe.Run(ctx) })
	ds := make([]*can.Driver, len(socks))
	for i, s := range socks {
		ds[i] = can.New(drivers.Params{Name: fmt.Sprintf("bus%d", i), ConfigDir: "."})
		ds[i].Transport, ds[i].Address, ds[i].DBC, ds[i].Unmapped = can.TransportVBus, s, "../../configs/vehicle.dbc", canmap.UnmappedEmit
		if err := ds[i].Init(); err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			if err := ds[i].Run(ctx, pipe); err != nil {
				b.Error(err)
			}
		})
	}
	frames := func() (n, drops uint64) {
		for _, d := range ds {
			st := d.Stats()
			n += st.Frames
			drops += st.Drops
		}
		return n, drops
	}
	time.Sleep(2 * time.Second) // warm up: connect, DBC caches, queue files
	f0, d0 := frames()
	p0, s0 := pipe.Stats(), nSamples.Load()
	c0, t0 := processCPU(), time.Now()
	b.ResetTimer()
	time.Sleep(window)
	b.StopTimer()
	c1, el := processCPU(), time.Since(t0)
	f1, d1 := frames()
	p1, s1 := pipe.Stats(), nSamples.Load()
	cancel()
	wg.Wait()
	n := f1 - f0
	if n == 0 {
		b.Fatal("no frames ingested")
	}
	b.ReportMetric(float64(n)/el.Seconds(), "frames/s")
	b.ReportMetric(float64((c1-c0).Microseconds())/float64(n), "cpu-µs/frame")
	b.ReportMetric(float64((c1-c0).Milliseconds())/el.Seconds(), "cpu-ms/s")
	b.ReportMetric(float64(d1-d0), "drops")
	b.ReportMetric(float64(p1.Dropped-p0.Dropped), "sample-drops")
	b.ReportMetric(float64(p1.Records-p0.Records), "records")
	b.ReportMetric(float64(s1-s0)/el.Seconds(), "samples/s")
}

// BenchmarkIngestIdle is BenchmarkIngestEndToEnd's fixed cost: the same
// queue and telemetry pipeline with no bus, over the same window. Its
// cpu-ms/s is paid whatever the frame rate (Badger's and the runtime's
// background work); run with -benchtime=1x.
func BenchmarkIngestIdle(b *testing.B) {
	const window = 5 * time.Second
	dir := b.TempDir()
	q, err := buffer.Open(buffer.Options{Dir: filepath.Join(dir, "queue")})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	live := signals.New()
	pipe, err := telemetry.New(telemetry.Options{
		Interval: time.Second, MaxPending: 16384, Observe: live.Set,
		Append: func(ctx context.Context, _ telemetry.Class, data [][]byte) error {
			_, err := q.AppendBatch(ctx, buffer.ClassTelemetry, data)
			return err
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = pipe.Run(ctx) })
	time.Sleep(2 * time.Second)
	c0, t0 := processCPU(), time.Now()
	b.ResetTimer()
	time.Sleep(window)
	b.StopTimer()
	c1, el := processCPU(), time.Since(t0)
	cancel()
	wg.Wait()
	b.ReportMetric(float64((c1-c0).Milliseconds())/el.Seconds(), "cpu-ms/s")
}
