package uplink_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/record"
	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/agent/uplink/uplinktest"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// fillBacklog appends n realistic telemetry records (≈ 150 bytes of
// envelope each) observed an hour ago.
func fillBacklog(b *testing.B, q *uplinktest.Queue, n int) {
	at := time.Now().Add(-time.Hour)
	for i := 0; i < n; i++ {
		body := fmt.Sprintf(`{"signals":{"Vehicle.Speed":%d.%d,"Vehicle.Powertrain.Battery.Voltage":12.%d,"Vehicle.Cabin.Door.Row1.DriverSide.IsLocked":true}}`, i%130, i%10, i%9)
		data, err := record.Record{Kind: record.KindTelemetry, Time: at.Add(time.Duration(i) * time.Millisecond), Body: json.RawMessage(body)}.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		q.Append(uplink.ClassTelemetry, at, data)
	}
}

// BenchmarkDrainBacklog drains a 1,000,000-record backlog to an
// in-process broker over loopback with the shipped limits (≤ 90
// publishes/s, 120 KiB messages, window 50, no byte cap); backlog_rate is unlimited
// ("capacity") and at its default 50,000 records/s.
func BenchmarkDrainBacklog(b *testing.B) {
	const n = 1_000_000
	for _, rate := range []int{0, 50000} {
		b.Run(fmt.Sprintf("backlog_rate=%d", rate), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				cloud := startCloud(b, devcloud.Limits{})
				q := uplinktest.NewQueue()
				fillBacklog(b, q, n)
				cfg := fastConfig(cloud.Addr())
				cfg.BacklogRate = rate
				cfg.BatchLatency = uplink.DefaultConfig().BatchLatency
				// The agent's drain capacity, not AWS's per-connection
				// byte cap (BenchmarkDrainCityCapped measures that).
				cfg.MaxThroughput = 0
				s, err := uplink.New(uplink.Options{Config: cfg, Thing: "TCU-BENCH", Queue: q, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start, cpu0 := time.Now(), cpuTime()
				stop := runSession(b, s)
				eventually(b, 10*time.Minute, "backlog drained", func() bool { stored, _, _, _ := q.Counts(); return stored == 0 })
				elapsed, cpu := time.Since(start), cpuTime()-cpu0
				b.StopTimer()
				stop()
				st := s.Stats()
				b.ReportMetric(float64(n)/elapsed.Seconds(), "records/s")
				b.ReportMetric(float64(st.Published)/elapsed.Seconds(), "publishes/s")
				b.ReportMetric(float64(st.BytesPublished)/float64(st.Published), "bytes/msg")
				b.ReportMetric(float64(cpu.Microseconds())/n, "cpu-µs/record") // agent + broker, both in this process
				cloud.Close()
			}
		})
	}
}

// BenchmarkColdStartFirstPuback measures process-like cold start with
// the identity on disk: load the key pair, create the session, connect
// over mutual TLS (with the default first-connect jitter) and get the
// first record acknowledged.
func BenchmarkColdStartFirstPuback(b *testing.B) {
	cloud := startCloud(b, devcloud.Limits{})
	dir := b.TempDir()
	id, err := cloud.CA().MintThing("TCU-COLD")
	if err != nil {
		b.Fatal(err)
	}
	certPath, keyPath, err := id.WriteFiles(dir, "thing")
	if err != nil {
		b.Fatal(err)
	}
	cfg := tlsConfig(b, cloud.TLSAddr(), cloud.CA().CertPEM)
	cfg.FirstConnectJitter = uplink.DefaultConfig().FirstConnectJitter
	cfg.CAFile = filepath.Join(filepath.Dir(cfg.CAFile), "ca.pem")
	var total time.Duration
	for i := 0; i < b.N; i++ {
		q := uplinktest.NewQueue()
		appendTelemetry(b, q, 1, time.Now())
		start := time.Now()
		pair, err := tls.LoadX509KeyPair(certPath, keyPath)
		if err != nil {
			b.Fatal(err)
		}
		s, err := uplink.New(uplink.Options{Config: cfg, Thing: "TCU-COLD", Queue: q, Logger: slog.New(slog.DiscardHandler),
			Certificate: func() (*tls.Certificate, error) { return &pair, nil }})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = s.Run(ctx); close(done) }()
		for s.Stats().AckedRecords == 0 {
			time.Sleep(time.Millisecond)
		}
		total += time.Since(start)
		cancel()
		<-done
		time.Sleep(1100 * time.Millisecond) // ≤ 1 CONNECT/s per client ID at the broker
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/first-puback")
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDrainCityCapped drains a 200,000-record backlog of the city
// stream to the in-process broker under the default 512 KiB/s
// per-connection throughput cap (backlog_rate unlimited, so the cap and
// the publish rate are the only limits), JSON envelope vs compact.
func BenchmarkDrainCityCapped(b *testing.B) {
	const n = 200_000
	recs := uplink.CityStream(n)
	for _, enc := range []string{uplink.EncodingJSON, uplink.EncodingCompact} {
		b.Run(enc, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				cloud := startCloud(b, devcloud.Limits{})
				col := collect(cloud, "dt/tcu/+/+")
				q := uplinktest.NewQueue()
				for _, r := range recs {
					q.Append(r.Class, r.Time, r.Data)
				}
				cfg := fastConfig(cloud.Addr())
				cfg.Encoding = enc
				cfg.BacklogRate = 0
				cfg.BatchLatency = uplink.DefaultConfig().BatchLatency
				s, err := uplink.New(uplink.Options{Config: cfg, Thing: "demo-car-001", Queue: q, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				stop := runSession(b, s)
				eventually(b, 10*time.Minute, "backlog drained", func() bool { stored, _, _, _ := q.Counts(); return stored == 0 })
				elapsed := time.Since(start)
				b.StopTimer()
				stop()
				if got, _ := col.distinct(); got != n {
					b.Fatalf("%d distinct records arrived, want %d", got, n)
				}
				st := s.Stats()
				b.ReportMetric(elapsed.Seconds(), "s/drain")
				b.ReportMetric(float64(n)/elapsed.Seconds(), "records/s")
				b.ReportMetric(float64(st.BytesPublished)/elapsed.Seconds()/1024, "KiB/s")
				b.ReportMetric(float64(st.BytesPublished)/n, "payload-B/record")
				cloud.Close()
			}
		})
	}
}
