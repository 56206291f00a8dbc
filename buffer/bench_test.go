package buffer_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/buffer"
)

// BenchmarkAppend measures enqueue throughput per sync policy, record size
// and batch, where batch is the number of concurrent appenders (they share
// commits and syncs). "raw" is an append-only file written and fsync'd
// once per batch in the same run, the baseline of the issue.
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{200, 2000} {
		for _, batch := range []int{1, 64, 1024} {
			b.Run(fmt.Sprintf("raw/size=%d/batch=%d", size, batch), func(b *testing.B) { benchRaw(b, size, batch) })
			for _, pol := range []buffer.SyncPolicy{buffer.SyncAlways, buffer.SyncGroup, buffer.SyncNone} {
				b.Run(fmt.Sprintf("%s/size=%d/batch=%d", pol, size, batch), func(b *testing.B) {
					benchAppend(b, pol, size, batch)
				})
				if batch > 1 {
					b.Run(fmt.Sprintf("%s-AppendBatch/size=%d/batch=%d", pol, size, batch), func(b *testing.B) {
						benchAppendBatch(b, pol, size, batch)
					})
				}
			}
		}
	}
}

func benchAppend(b *testing.B, pol buffer.SyncPolicy, size, batch int) {
	o := testOptions(b)
	o.Sync = pol
	o.MaxBytes = 1 << 40
	q := mustOpen(b, o)
	data := make([]byte, size)
	var n atomic.Int64
	b.SetBytes(int64(size))
	b.ResetTimer()
	var wg sync.WaitGroup
	for range batch {
		wg.Go(func() {
			for n.Add(1) <= int64(b.N) {
				if _, err := q.Append(context.Background(), buffer.ClassTelemetry, data); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	s := q.Stats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rec/s")
	b.ReportMetric(float64(s.Syncs)/float64(b.N), "syncs/rec")
}

// benchAppendBatch appends with AppendBatch calls of batch records from
// one goroutine: the single-producer path, comparable to the raw file.
func benchAppendBatch(b *testing.B, pol buffer.SyncPolicy, size, batch int) {
	o := testOptions(b)
	o.Sync = pol
	o.MaxBytes = 1 << 40
	q := mustOpen(b, o)
	data := make([][]byte, batch)
	for i := range data {
		data[i] = make([]byte, size)
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		if _, err := q.AppendBatch(context.Background(), buffer.ClassTelemetry, data[:min(batch, b.N-i)]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rec/s")
	b.ReportMetric(float64(q.Stats().Syncs)/float64(b.N), "syncs/rec")
}

func benchRaw(b *testing.B, size, batch int) {
	f, err := os.Create(filepath.Join(b.TempDir(), "raw.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	data := make([]byte, size)
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; {
		for j := 0; j < batch && i < b.N; j, i = j+1, i+1 {
			_ = binary.Write(w, binary.BigEndian, uint32(size))
			_, _ = w.Write(data)
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rec/s")
}

// BenchmarkFillDrain fills 1,000,000 records of 200 B (AppendBatch of 256
// from 4 goroutines; SyncGroup, the default, and SyncAlways), then drains
// them with Lease(1024)+Ack, then runs GC. It reports fill and drain rates,
// peak RssAnon of the process during the run, bytes written to disk per
// payload byte, and the store's disk size full and after the drain.
func BenchmarkFillDrain(b *testing.B) {
	for _, pol := range []buffer.SyncPolicy{buffer.SyncGroup, buffer.SyncAlways} {
		b.Run(string(pol), func(b *testing.B) {
			for range b.N {
				benchFillDrain(b, pol)
			}
		})
	}
}

func benchFillDrain(b *testing.B, pol buffer.SyncPolicy) {
	const n, size = 1_000_000, 200
	o := testOptions(b)
	o.Sync = pol
	o.MaxBytes = 512 << 20
	q := mustOpen(b, o)
	runtime.GC()
	stop := sampleRSS()
	io0 := writeBytes()
	t := time.Now()
	fill(b, q, n, size, 4)
	fillDur := time.Since(t)
	q.CollectGarbage()
	full := q.Stats().DiskBytes
	t = time.Now()
	drain(b, q)
	drainDur := time.Since(t)
	q.CollectGarbage()
	peak := stop()
	b.ReportMetric(n/fillDur.Seconds(), "fill-rec/s")
	b.ReportMetric(n/drainDur.Seconds(), "drain-rec/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-RssAnon-MB")
	b.ReportMetric(float64(writeBytes()-io0)/float64(n*size), "disk-bytes/payload-byte")
	b.ReportMetric(float64(full)/(1<<20), "disk-full-MB")
	b.ReportMetric(float64(q.Stats().DiskBytes)/(1<<20), "disk-drained-MB")
}

// BenchmarkLeaseAfterDrain compares Lease+Release of 100 records on a
// fresh store with the same after 1,000,000 records were appended and
// acked (half of them out of order, leaving tombstones).
func BenchmarkLeaseAfterDrain(b *testing.B) {
	for _, drained := range []int{0, 1_000_000} {
		b.Run(fmt.Sprintf("acked=%d", drained), func(b *testing.B) {
			o := testOptions(b)
			o.Sync = buffer.SyncNone
			o.MaxBytes = 1 << 40
			o.GCInterval = time.Hour
			q := mustOpen(b, o)
			if drained > 0 {
				fill(b, q, drained, 200, 4)
				drainOutOfOrder(b, q)
			}
			fill(b, q, 1000, 200, 1)
			b.ResetTimer()
			for range b.N {
				recs, err := q.Lease(100, 0)
				if err != nil || len(recs) != 100 {
					b.Fatalf("Lease: %d records, %v", len(recs), err)
				}
				for _, r := range recs {
					q.Release(r.Seq)
				}
			}
		})
	}
}

// fill appends n records of size bytes with AppendBatch calls of 256
// records from the given number of goroutines.
func fill(b testing.TB, q *buffer.Queue, n, size, workers int) {
	data := make([]byte, size)
	batch := make([][]byte, 256)
	for i := range batch {
		batch[i] = data
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				end := next.Add(int64(len(batch)))
				start := end - int64(len(batch))
				if start >= int64(n) {
					return
				}
				recs := batch[:min(end, int64(n))-start]
				if _, err := q.AppendBatch(context.Background(), buffer.ClassTelemetry, recs); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// drainOutOfOrder leases two batches and acks the second first.
func drainOutOfOrder(b testing.TB, q *buffer.Queue) {
	for {
		r1, err1 := q.Lease(512, 0)
		r2, err2 := q.Lease(512, 0)
		if err1 != nil || err2 != nil {
			b.Fatal(err1, err2)
		}
		if len(r1) == 0 {
			return
		}
		for _, rs := range [][]buffer.Record{r2, r1} {
			seqs := make([]uint64, len(rs))
			for i, r := range rs {
				seqs[i] = r.Seq
			}
			if err := q.Ack(seqs...); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// sampleRSS samples RssAnon every 20 ms until the returned func is called,
// which returns the peak in bytes.
func sampleRSS() func() int64 {
	var peak atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if v := procStatus("RssAnon:"); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() int64 { close(done); wg.Wait(); return peak.Load() }
}

// procStatus returns a kB field of /proc/self/status in bytes.
func procStatus(field string) int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte(field)); ok {
			f := bytes.Fields(rest)
			if len(f) > 0 {
				v, _ := strconv.ParseInt(string(f[0]), 10, 64)
				return v << 10
			}
		}
	}
	return 0
}

// writeBytes returns write_bytes of /proc/self/io (bytes sent to storage).
func writeBytes() int64 {
	b, _ := os.ReadFile("/proc/self/io")
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte("write_bytes:")); ok {
			v, _ := strconv.ParseInt(string(bytes.TrimSpace(rest)), 10, 64)
			return v
		}
	}
	return 0
}

// BenchmarkVehicleRate appends at a vehicle's rate (rate records/s of
// size bytes, one AppendBatch per 10 ms tick, SyncGroup) for 5 s while a
// publisher leases and acks what arrives, and reports the bytes written to
// disk per payload byte: the flash wear of a connected vehicle. The value-
// log threshold decides whether small group commits touch one file (inline
// in the WAL) or two (WAL and value log) per sync.
func BenchmarkVehicleRate(b *testing.B) {
	for _, rate := range []int{200, 2000} {
		for _, vt := range []int64{160, 4 << 10} {
			b.Run(fmt.Sprintf("rate=%d/threshold=%d", rate, vt), func(b *testing.B) {
				for range b.N {
					benchVehicleRate(b, rate, 200, vt)
				}
			})
		}
	}
}

func benchVehicleRate(b *testing.B, rate, size int, threshold int64) {
	o := testOptions(b)
	o.Sync = buffer.SyncGroup
	buffer.SetValueThreshold(&o, threshold)
	q := mustOpen(b, o)
	per := rate / 100
	batch := make([][]byte, per)
	for i := range batch {
		batch[i] = make([]byte, size)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { // publisher
		for ctx.Err() == nil {
			select {
			case <-q.Ready():
			case <-ctx.Done():
			}
			for {
				recs, err := q.Lease(256, 0)
				if err != nil || len(recs) == 0 {
					break
				}
				seqs := make([]uint64, len(recs))
				for i, r := range recs {
					seqs[i] = r.Seq
				}
				_ = q.Ack(seqs...)
			}
		}
	})
	io0, syncs0 := writeBytes(), q.Stats().Syncs
	tick := time.NewTicker(10 * time.Millisecond)
	n := 0
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); <-tick.C {
		go func() { _, _ = q.AppendBatch(ctx, buffer.ClassTelemetry, batch) }()
		n += per
	}
	tick.Stop()
	time.Sleep(100 * time.Millisecond)
	cancel()
	wg.Wait()
	q.CollectGarbage()
	b.ReportMetric(float64(writeBytes()-io0)/float64(n*size), "disk-bytes/payload-byte")
	b.ReportMetric(float64(q.Stats().Syncs-syncs0)/5, "syncs/s")
}

// BenchmarkAppendVsRaw compares the queue (SyncAlways, one producer calling
// AppendBatch) with a raw append-only file fsync'd once per batch, at the
// same record size and batch. The two alternate in 7 short rounds on the
// same disk and the reported ratio is the median of the per-round ratios,
// so that the shared VM's disk, whose speed drifts 2x within a minute,
// affects both sides of each ratio alike. A third arm, the queue with
// SyncNone, shows what Badger's write path costs without any sync.
func BenchmarkAppendVsRaw(b *testing.B) {
	for _, size := range []int{200, 2000} {
		for _, batch := range []int{64, 1024} {
			b.Run(fmt.Sprintf("size=%d/batch=%d", size, batch), func(b *testing.B) {
				for range b.N {
					benchAppendVsRaw(b, size, batch)
				}
			})
		}
	}
}

func benchAppendVsRaw(b *testing.B, size, batch int) {
	commits := max(40, 4<<20/(size*batch)) // at least 4 MB per round
	queue := func(pol buffer.SyncPolicy) *buffer.Queue {
		o := testOptions(b)
		o.Sync = pol
		o.MaxBytes = 1 << 40
		return mustOpen(b, o)
	}
	always, none := queue(buffer.SyncAlways), queue(buffer.SyncNone)
	f, err := os.Create(filepath.Join(b.TempDir(), "raw.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	data := make([][]byte, batch)
	for i := range data {
		data[i] = make([]byte, size)
	}
	buf := make([]byte, 0, batch*(size+4))
	rate := func(fn func()) float64 {
		t := time.Now()
		for range commits {
			fn()
		}
		return float64(commits*batch) / time.Since(t).Seconds()
	}
	appendTo := func(q *buffer.Queue) func() {
		return func() {
			if _, err := q.AppendBatch(context.Background(), buffer.ClassTelemetry, data); err != nil {
				b.Fatal(err)
			}
		}
	}
	var raws, queues, ratios, noneRatios []float64
	for range 7 {
		raw := rate(func() {
			buf = buf[:0]
			for _, d := range data {
				buf = binary.BigEndian.AppendUint32(buf, uint32(len(d)))
				buf = append(buf, d...)
			}
			if _, err := f.Write(buf); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		})
		qr := rate(appendTo(always))
		nr := rate(appendTo(none))
		raws, queues = append(raws, raw), append(queues, qr)
		ratios, noneRatios = append(ratios, qr/raw), append(noneRatios, nr/raw)
	}
	b.ReportMetric(median(raws), "raw-rec/s")
	b.ReportMetric(median(queues), "queue-rec/s")
	b.ReportMetric(median(ratios), "ratio")
	b.ReportMetric(median(noneRatios), "none-ratio")
}

func median(x []float64) float64 {
	s := slices.Clone(x)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkOfflineBacklog builds a 50 MB backlog of small commits (2 KB of
// telemetry each, one 200-byte event every tenth commit), nothing
// acknowledged: what a vehicle offline for hours at a low rate produces, in
// seconds. Small chunks stay inline in Badger's tree, so this measures
// whether L0 compactions rewrite the growing backlog (disk bytes written
// per payload byte; 3 = WAL + L0 + base level once each).
func BenchmarkOfflineBacklog(b *testing.B) {
	for range b.N {
		o := testOptions(b)
		o.Sync = buffer.SyncNone
		o.MaxBytes = 1 << 30
		q := mustOpen(b, o)
		tel := make([][]byte, 10)
		for i := range tel {
			tel[i] = make([]byte, 200)
		}
		ev := [][]byte{make([]byte, 200)}
		io0 := writeBytes()
		n := 0
		for i := 0; n*200 < 50<<20; i++ {
			if _, err := q.AppendBatch(context.Background(), buffer.ClassTelemetry, tel); err != nil {
				b.Fatal(err)
			}
			n += len(tel)
			if i%10 == 0 {
				if _, err := q.AppendBatch(context.Background(), buffer.ClassEvent, ev); err != nil {
					b.Fatal(err)
				}
				n++
			}
		}
		b.ReportMetric(float64(writeBytes()-io0)/float64(n*200), "disk-bytes/payload-byte")
	}
}
