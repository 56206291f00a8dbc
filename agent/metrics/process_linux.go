package metrics

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// userHZ is the unit of the clock-tick fields of /proc/PID/stat (USER_HZ,
// 100 on every Linux architecture the agent is built for).
const userHZ = 100

// registerProcess adds the process_* families from /proc/self and
// getrusage/getrlimit.
func (r *Registry) registerProcess() {
	r.CollectFunc("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", TypeCounter, nil, func(emit EmitFunc) {
		var ru unix.Rusage
		if unix.Getrusage(unix.RUSAGE_SELF, &ru) == nil {
			emit(float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9)
		}
	})
	statm := func(field int) func(EmitFunc) {
		return func(emit EmitFunc) {
			b, err := os.ReadFile("/proc/self/statm")
			if err != nil {
				return
			}
			f := strings.Fields(string(b))
			if len(f) <= field {
				return
			}
			if pages, err := strconv.ParseUint(f[field], 10, 64); err == nil {
				emit(float64(pages) * float64(os.Getpagesize()))
			}
		}
	}
	r.CollectFunc("process_virtual_memory_bytes", "Virtual memory size in bytes.", TypeGauge, nil, statm(0))
	r.CollectFunc("process_resident_memory_bytes", "Resident memory size in bytes.", TypeGauge, nil, statm(1))
	r.CollectFunc("process_open_fds", "Number of open file descriptors.", TypeGauge, nil, func(emit EmitFunc) {
		if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
			emit(float64(len(ents)))
		}
	})
	r.CollectFunc("process_max_fds", "Maximum number of open file descriptors.", TypeGauge, nil, func(emit EmitFunc) {
		var rl unix.Rlimit
		if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil {
			emit(float64(rl.Cur))
		}
	})
	r.CollectFunc("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", TypeGauge, nil, func(emit EmitFunc) {
		if t, ok := processStart(); ok {
			emit(float64(t.UnixNano()) / 1e9)
		}
	})
}

// processStart returns when this process started: its start time in clock
// ticks after boot (/proc/self/stat field 22) and the boot time from
// CLOCK_BOOTTIME (/proc/stat's btime is hidden under ProcSubset=pid).
func processStart() (time.Time, bool) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return time.Time{}, false
	}
	// The command name (field 2) may contain spaces: count from its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return time.Time{}, false
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3
	if len(f) < 20 {
		return time.Time{}, false
	}
	ticks, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return time.Time{}, false
	}
	sinceBoot := time.Duration(ts.Nano())
	started := time.Duration(ticks) * time.Second / userHZ
	return time.Now().Add(started - sinceBoot), true
}
