package metrics

import (
	"bytes"
	"os"
	"runtime"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// TestRuntimeFamilies registers the go_* and process_* families, parses
// the output with Prometheus' parser and checks that the values are this
// process's: goroutines, heap, GC summary, CPU, memory, fds, start time.
func TestRuntimeFamilies(t *testing.T) {
	t.Parallel()
	r := New()
	r.RegisterRuntime()
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	fams := parse(t, buf.Bytes())
	value := func(name string, typ dto.MetricType) float64 {
		t.Helper()
		f, ok := fams[name]
		if !ok {
			t.Errorf("family %s missing", name)
			return 0
		}
		if f.GetType() != typ {
			t.Errorf("%s: type %v, want %v", name, f.GetType(), typ)
		}
		m := f.GetMetric()[0]
		switch typ {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue()
		}
		return 0
	}
	positive := []struct {
		name string
		typ  dto.MetricType
	}{
		{"go_goroutines", dto.MetricType_GAUGE},
		{"go_threads", dto.MetricType_GAUGE},
		{"go_info", dto.MetricType_GAUGE},
		{"go_sched_gomaxprocs_threads", dto.MetricType_GAUGE},
		{"go_memstats_alloc_bytes", dto.MetricType_GAUGE},
		{"go_memstats_heap_alloc_bytes", dto.MetricType_GAUGE},
		{"go_memstats_alloc_bytes_total", dto.MetricType_COUNTER},
		{"go_memstats_mallocs_total", dto.MetricType_COUNTER},
		{"go_memstats_heap_objects", dto.MetricType_GAUGE},
		{"go_memstats_heap_inuse_bytes", dto.MetricType_GAUGE},
		{"go_memstats_heap_sys_bytes", dto.MetricType_GAUGE},
		{"go_memstats_stack_inuse_bytes", dto.MetricType_GAUGE},
		{"go_memstats_sys_bytes", dto.MetricType_GAUGE},
		{"go_memstats_next_gc_bytes", dto.MetricType_GAUGE},
		{"process_cpu_seconds_total", dto.MetricType_COUNTER},
		{"process_resident_memory_bytes", dto.MetricType_GAUGE},
		{"process_virtual_memory_bytes", dto.MetricType_GAUGE},
		{"process_open_fds", dto.MetricType_GAUGE},
		{"process_max_fds", dto.MetricType_GAUGE},
		{"process_start_time_seconds", dto.MetricType_GAUGE},
	}
	for _, p := range positive {
		if v := value(p.name, p.typ); v <= 0 {
			t.Errorf("%s = %v, want > 0", p.name, v)
		}
	}
	if got := fams["go_info"].GetMetric()[0].GetLabel()[0].GetValue(); got == "" {
		t.Error("go_info has no version")
	}
	// The fd count is this process's (within what the test runner opens
	// concurrently).
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	if v := value("process_open_fds", dto.MetricType_GAUGE); v < 3 || v > float64(len(ents)+20) {
		t.Errorf("process_open_fds = %v, /proc/self/fd has %d", v, len(ents))
	}
	// The test binary started less than an hour ago, not in the future.
	start := time.Unix(int64(value("process_start_time_seconds", dto.MetricType_GAUGE)), 0)
	if age := time.Since(start); age < -2*time.Second || age > time.Hour {
		t.Errorf("process_start_time_seconds is %v ago", age)
	}
	// RSS is between 1 MB and 1 GB for a test binary.
	if v := value("process_resident_memory_bytes", dto.MetricType_GAUGE); v < 1e6 || v > 1e9 {
		t.Errorf("process_resident_memory_bytes = %v", v)
	}
	gc, ok := fams["go_gc_duration_seconds"]
	if !ok || gc.GetType() != dto.MetricType_SUMMARY {
		t.Fatalf("go_gc_duration_seconds missing or not a summary: %v", gc)
	}
	if q := gc.GetMetric()[0].GetSummary().GetQuantile(); len(q) != 5 || q[0].GetQuantile() != 0 || q[4].GetQuantile() != 1 {
		t.Errorf("go_gc_duration_seconds quantiles = %v", q)
	}
}

// TestRuntimeGCCount: the GC summary's count follows runtime.GC().
func TestRuntimeGCCount(t *testing.T) {
	t.Parallel()
	r := New()
	r.RegisterRuntime()
	count := func() uint64 {
		var buf bytes.Buffer
		if err := r.WriteText(&buf); err != nil {
			t.Fatal(err)
		}
		return parse(t, buf.Bytes())["go_gc_duration_seconds"].GetMetric()[0].GetSummary().GetSampleCount()
	}
	before := count()
	runtime.GC()
	if after := count(); after <= before {
		t.Errorf("GC count %d -> %d after runtime.GC", before, after)
	}
}
