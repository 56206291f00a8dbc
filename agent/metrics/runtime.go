package metrics

import (
	"bufio"
	"fmt"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// RegisterRuntime adds the Go runtime's and the process's standard
// families, under the names the Prometheus Go client uses, so that stock
// dashboards work: go_goroutines, go_threads, go_info, go_gc_duration_seconds
// (a summary of GC pause times), go_memstats_* (heap, allocations, GC goal)
// and process_cpu_seconds_total, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_open_fds, process_max_fds,
// process_start_time_seconds (Linux /proc). Every value is read at scrape
// time; a value that cannot be read (e.g. /proc hidden) is left out.
func (r *Registry) RegisterRuntime() {
	r.GaugeFunc("go_goroutines", "Number of goroutines that currently exist.", func() float64 {
		return float64(runtime.NumGoroutine())
	})
	r.GaugeFunc("go_threads", "Number of OS threads created.", func() float64 {
		n, _ := runtime.ThreadCreateProfile(nil)
		return float64(n)
	})
	r.CollectFunc("go_info", "Information about the Go environment.", TypeGauge, []string{"version"}, func(emit EmitFunc) {
		emit(1, runtime.Version())
	})
	r.GaugeFunc("go_sched_gomaxprocs_threads", "The current runtime.GOMAXPROCS setting.", func() float64 {
		return float64(runtime.GOMAXPROCS(0))
	})
	r.register(&gcSummary{desc: desc{name: "go_gc_duration_seconds",
		help: "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.", typ: TypeSummary}})

	// go_memstats_* from runtime/metrics (no stop-the-world, unlike
	// runtime.ReadMemStats), as the Go client derives them.
	mem := func(name, help string, typ Type, keys ...string) {
		fn := func() float64 {
			s := make([]metrics.Sample, len(keys))
			for i, k := range keys {
				s[i].Name = k
			}
			metrics.Read(s)
			var sum float64
			for _, v := range s {
				if v.Value.Kind() == metrics.KindUint64 {
					sum += float64(v.Value.Uint64())
				}
			}
			return sum
		}
		if typ == TypeCounter {
			r.CounterFunc(name, help, fn)
		} else {
			r.GaugeFunc(name, help, fn)
		}
	}
	mem("go_memstats_alloc_bytes", "Number of bytes allocated in heap and currently in use.", TypeGauge, "/memory/classes/heap/objects:bytes")
	mem("go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and currently in use.", TypeGauge, "/memory/classes/heap/objects:bytes")
	mem("go_memstats_alloc_bytes_total", "Total number of bytes allocated in heap until now, even if released already.", TypeCounter, "/gc/heap/allocs:bytes")
	mem("go_memstats_mallocs_total", "Total number of heap objects allocated, both live and gc-ed.", TypeCounter, "/gc/heap/allocs:objects", "/gc/heap/tiny/allocs:objects")
	mem("go_memstats_frees_total", "Total number of heap objects frees.", TypeCounter, "/gc/heap/frees:objects", "/gc/heap/tiny/allocs:objects")
	mem("go_memstats_heap_objects", "Number of currently allocated objects.", TypeGauge, "/gc/heap/objects:objects")
	mem("go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use.", TypeGauge, "/memory/classes/heap/objects:bytes", "/memory/classes/heap/unused:bytes")
	mem("go_memstats_heap_idle_bytes", "Number of heap bytes waiting to be used.", TypeGauge, "/memory/classes/heap/released:bytes", "/memory/classes/heap/free:bytes")
	mem("go_memstats_heap_released_bytes", "Number of heap bytes released to OS.", TypeGauge, "/memory/classes/heap/released:bytes")
	mem("go_memstats_heap_sys_bytes", "Number of heap bytes obtained from system.", TypeGauge,
		"/memory/classes/heap/objects:bytes", "/memory/classes/heap/unused:bytes", "/memory/classes/heap/released:bytes", "/memory/classes/heap/free:bytes")
	mem("go_memstats_stack_inuse_bytes", "Number of bytes obtained from system for stack allocator in non-CGO environments.", TypeGauge, "/memory/classes/heap/stacks:bytes")
	mem("go_memstats_sys_bytes", "Number of bytes obtained from system.", TypeGauge, "/memory/classes/total:bytes")
	mem("go_memstats_next_gc_bytes", "Number of heap bytes when next garbage collection will take place.", TypeGauge, "/gc/heap/goal:bytes")
	mem("go_gc_cycles_total_gc_cycles_total", "Count of all completed GC cycles.", TypeCounter, "/gc/cycles/total:gc-cycles")
	r.GaugeFunc("go_memstats_last_gc_time_seconds", "Number of seconds since 1970 of last garbage collection.", func() float64 {
		var s debug.GCStats
		debug.ReadGCStats(&s)
		return float64(s.LastGC.UnixNano()) / 1e9
	})
	r.registerProcess()
}

// gcSummary is go_gc_duration_seconds: the quantiles of recent GC pauses
// (min, 25 %, median, 75 %, max, as debug.ReadGCStats gives them), their
// sum and count.
type gcSummary struct{ desc }

func (g *gcSummary) collect(func(float64, ...string)) {} // written by writeText

func (g *gcSummary) writeText(w *bufio.Writer) {
	s := debug.GCStats{PauseQuantiles: make([]time.Duration, 5)}
	debug.ReadGCStats(&s)
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s summary\n", g.name, escapeHelp(g.help), g.name)
	for i, q := range []string{"0", "0.25", "0.5", "0.75", "1"} {
		fmt.Fprintf(w, "%s{quantile=\"%s\"} %s\n", g.name, q, formatValue(s.PauseQuantiles[i].Seconds()))
	}
	fmt.Fprintf(w, "%s_sum %s\n%s_count %d\n", g.name, formatValue(s.PauseTotal.Seconds()), g.name, s.NumGC)
}
