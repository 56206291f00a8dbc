//go:build idlecost && linux

package agenttest

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/ctl"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
	"github.com/tcu-agent/tcu-agent/drivers/gnss/nmeasim"
	"github.com/tcu-agent/tcu-agent/drivers/sim"
)

// TestIdleCost measures what the real tcu-agent binary costs while it
// runs: process wake-ups per second (voluntary + involuntary context
// switches of every thread, /proc/<pid>/task/*/status), CPU-ms per minute
// (utime + stime, /proc/<pid>/stat), bytes per hour on the wire (TLS
// included, counted at a loopback TCP proxy between the agent and the dev
// cloud's mutual-TLS listener) and, after the idle window, publish →
// BODY_COMMAND frame and publish → final response latency of door
// commands. docs/perf/idle.md has the method and the numbers.
//
//	go test -tags idlecost -run IdleCost -v -timeout 0 ./agent/agenttest/
//
// Environment (all optional):
//
//	IDLECOST_DURATION   measured idle window per scenario (default 10m)
//	IDLECOST_SETTLE     wait after connecting before the window (default 30s)
//	IDLECOST_SCENARIOS  comma-separated subset of driving,parked,deep_sleep
//	IDLECOST_COMMANDS   door commands after the window (default 5)
//	IDLECOST_COMMAND    the command sent (default door.lock; door.unlock is
//	                    interlocked: on a sleeping bus it wakes the bus first)
//	IDLECOST_BINARY     a tcu-agent binary to measure instead of this tree's
//	IDLECOST_PROFILES=1 append `[profile] force = "<scenario>"` and skip the
//	                    config approximations of parked and deep_sleep
//	IDLECOST_APPEND_<SCENARIO>  a TOML file appended to that scenario's
//	                    config (e.g. IDLECOST_APPEND_PARKED=parked.toml)
//	IDLECOST_OUT        also append the result rows (markdown) to this file
//	IDLECOST_GNSS=0     no GNSS receiver (default: a simulated one, below)
//	IDLECOST_WATCHDOG   the systemd watchdog the agent runs under (default
//	                    30s, the unit's WatchdogSec; 0: no NOTIFY_SOCKET)
//	IDLECOST_AGENT_ENV  space-separated KEY=value added to the agent's
//	                    environment (e.g. GOMAXPROCS=1)
//
// The GNSS receiver: a pseudo-terminal fed with NMEA (RMC, GGA, GSA, VTG)
// once a second at the simulated vehicle's speed, as tcu-sim --nmea-pty
// does; the agent reads it through the demo config's gnss driver (and
// the profile's GNSS duty cycle). A real receiver talks whether or not
// anyone listens; epochs nobody reads are dropped.
//
// The watchdog: a unix datagram socket stands in for systemd's notify
// socket ($NOTIFY_SOCKET, $WATCHDOG_USEC), as the shipped unit runs the
// agent; the row counts the WATCHDOG=1 pings it received in the window.
//
// The bus: driving runs the simulated city cycle (~63 frames/s); parked
// and deep_sleep mute every cyclic message (the bus is asleep) and wake it
// (unmute) when the agent transmits a BODY_COMMAND frame, as a body
// controller's network management would, and put it back to sleep 5 s
// after the last command frame.
func TestIdleCost(t *testing.T) {
	bin := os.Getenv("IDLECOST_BINARY")
	if bin == "" {
		bin = binary(t)
	}
	dur := envDuration(t, "IDLECOST_DURATION", 10*time.Minute)
	settle := envDuration(t, "IDLECOST_SETTLE", 30*time.Second)
	ncmd := 5
	if v := os.Getenv("IDLECOST_COMMANDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("IDLECOST_COMMANDS: %v", err)
		}
		ncmd = n
	}
	scenarios := []string{"driving", "parked", "deep_sleep"}
	if v := os.Getenv("IDLECOST_SCENARIOS"); v != "" {
		scenarios = strings.Split(v, ",")
	}
	var rows []string
	for _, sc := range scenarios {
		t.Run(sc, func(t *testing.T) {
			r := measureIdle(t, bin, sc, dur, settle, ncmd)
			rows = append(rows, r.row(sc))
			t.Logf("%s", r.row(sc))
		})
	}
	out := "| scenario | window | wake-ups/s | CPU-ms/min | wire B/hour (up+down) | threads | watchdog pings | commands ok | frame p50 / max | final p50 / max |\n" +
		"|---|---|---|---|---|---|---|---|---|---|\n" + strings.Join(rows, "\n") + "\n"
	fmt.Print("\nidle cost (" + bin + "):\n" + out)
	if p := os.Getenv("IDLECOST_OUT"); p != "" {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = f.Close() }()
		if _, err := f.WriteString(out); err != nil {
			t.Fatal(err)
		}
	}
}

// idleResult is one scenario's measurement.
type idleResult struct {
	window           time.Duration
	ctxsw, invol     uint64 // all context switches; the involuntary ones among them
	cpuTicks         uint64
	up, down         int64
	threads          int
	pings            int64 // watchdog pings (-1: off)
	ok, sent         int
	toFrame, toFinal []time.Duration
	reasons          []string
}

func (r idleResult) row(sc string) string {
	s := r.window.Seconds()
	q := func(d []time.Duration) string {
		if len(d) == 0 {
			return "–"
		}
		d = slices.Clone(d)
		slices.Sort(d)
		return fmt.Sprintf("%d / %d ms", d[len(d)/2].Milliseconds(), d[len(d)-1].Milliseconds())
	}
	ok := fmt.Sprintf("%d/%d", r.ok, r.sent)
	if r.ok < r.sent {
		ok += " (" + strings.Join(r.reasons, ", ") + ")"
	}
	n := func(v int64) string {
		if v < 0 {
			return "off"
		}
		return strconv.FormatInt(v, 10)
	}
	return fmt.Sprintf("| %s | %s | %.1f (%.1f invol.) | %.0f | %.0f (%.0f + %.0f) | %d | %s | %s | %s | %s |", sc, r.window.Round(time.Second),
		float64(r.ctxsw)/s, float64(r.invol)/s, float64(r.cpuTicks)*1000/clkTck/s*60,
		float64(r.up+r.down)/s*3600, float64(r.up)/s*3600, float64(r.down)/s*3600,
		r.threads, n(r.pings), ok, q(r.toFrame), q(r.toFinal))
}

// clkTck is USER_HZ, 100 on every Linux architecture the agent ships for.
const clkTck = 100

func measureIdle(t *testing.T, bin, sc string, dur, settle time.Duration, ncmd int) idleResult {
	dir := t.TempDir()
	ctx := t.Context()
	cloud, err := devcloud.New(devcloud.Options{TLSAddr: "127.0.0.1:0", CADir: filepath.Join(dir, "ca"), Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	if err := cloud.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cloud.Close() })
	thing := "idlecost-" + strings.ReplaceAll(sc, "_", "-")
	id, err := cloud.CA().MintThing(thing)
	if err != nil {
		t.Fatal(err)
	}
	cloud.ActivateThing(id.Certificate.Certificate[0], thing)
	certFile, keyFile, err := id.WriteFiles(dir, "device")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca", devcloud.CACertFile)
	px := startCountingProxy(t, cloud.TLSAddr())

	profiles := os.Getenv("IDLECOST_PROFILES") == "1"
	var extra []byte
	if p := os.Getenv("IDLECOST_APPEND_" + strings.ToUpper(sc)); p != "" {
		if extra, err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
	}
	scenario := sim.ScenarioCity
	asleep := sc != "driving"
	if asleep {
		scenario = sim.ScenarioParked
	}
	opts := Options{Binary: bin, Thing: thing, Scenario: scenario, BodyDelay: 50 * time.Millisecond}
	opts.Env = strings.Fields(os.Getenv("IDLECOST_AGENT_ENV"))
	var wd *watchdogSocket
	if v := os.Getenv("IDLECOST_WATCHDOG"); v != "0" {
		every := 30 * time.Second
		if v != "" {
			if every, err = time.ParseDuration(v); err != nil {
				t.Fatalf("IDLECOST_WATCHDOG: %v", err)
			}
		}
		wd = startWatchdogSocket(t, filepath.Join(dir, "notify.sock"))
		opts.Env = append(opts.Env, "NOTIFY_SOCKET="+wd.path, "WATCHDOG_USEC="+strconv.FormatInt(every.Microseconds(), 10))
	}
	gnss := os.Getenv("IDLECOST_GNSS") != "0"
	var rx *nmeaReceiver
	opts.EditConfig = func(text string) string {
		gnssDevice := ""
		if rx != nil {
			gnssDevice = rx.device
		}
		text = idleConfig(text, px.addr(), caFile, certFile, keyFile, gnssDevice)
		if asleep && !profiles {
			text = parkedApprox(text, sc)
		}
		if profiles {
			text += "\n[profile]\nforce = " + strconv.Quote(sc) + "\n"
		}
		return text + "\n" + string(extra)
	}
	if gnss {
		rx = startNMEAReceiver(t)
	}
	s := Start(t, opts)
	if rx != nil {
		go rx.feed(ctx, s.Vehicle)
	}
	var mu sync.Mutex
	finals := map[string]time.Time{}
	resps := map[string]devcloud.Response{}
	cloud.Subscribe(devcloud.ResponseTopic(thing, "+"), func(_ string, p []byte) {
		r, err := devcloud.ParseResponse(p)
		if err != nil || !final(r.Status) {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if _, ok := finals[r.ID]; !ok {
			finals[r.ID], resps[r.ID] = time.Now(), r
		}
	})
	var awake atomic.Bool
	if asleep {
		s.MuteVehicle(true)
		go wakeOnCommand(ctx, s, &awake)
	}
	a := s.StartAgent()
	waitStatus(s, "the agent to connect over TLS", 60*time.Second, func(st ctl.Status) bool { return st.Connection.State == "connected" })
	time.Sleep(settle) // startup (first connect, Badger open, catch-up) is not idle cost

	pid := a.PID()
	sw0, inv0, th0 := ctxSwitches(t, pid)
	cpu0 := cpuTicks(t, pid)
	up0, down0 := px.up.Load(), px.down.Load()
	pings0 := wd.count()
	start := time.Now()
	select {
	case <-ctx.Done():
		t.Fatal("test context ended")
	case <-time.After(dur):
	}
	r := idleResult{window: time.Since(start)}
	sw1, inv1, th1 := ctxSwitches(t, pid)
	r.ctxsw, r.invol, r.cpuTicks = sw1-sw0, inv1-inv0, cpuTicks(t, pid)-cpu0
	r.up, r.down, r.threads = px.up.Load()-up0, px.down.Load()-down0, max(th0, th1)
	r.pings = wd.count() - pings0
	if wd == nil {
		r.pings = -1
	}
	if err := a.Err(); err != nil {
		t.Fatal(err)
	}

	// Commands, one at a time, each after the bus has gone back to sleep.
	for i := range ncmd {
		if asleep {
			waitAsleep(s, &awake, 60*time.Second)
		}
		req := devcloud.NewRequest(thing, cmp.Or(os.Getenv("IDLECOST_COMMAND"), "door.lock"), nil, time.Now(), 30*time.Second)
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		if err := cloud.Publish(devcloud.RequestTopic(thing, req.ID), b); err != nil {
			t.Fatal(err)
		}
		r.sent++
		s.WaitFor("command "+strconv.Itoa(i)+" answered", 60*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			_, ok := finals[req.ID]
			return ok
		})
		mu.Lock()
		fin, resp := finals[req.ID], resps[req.ID]
		mu.Unlock()
		r.toFinal = append(r.toFinal, fin.Sub(t0))
		if f := firstFrameAfter(s, t0); !f.IsZero() {
			r.toFrame = append(r.toFrame, f.Sub(t0))
		}
		if resp.Status == devcloud.StatusSucceeded {
			r.ok++
		} else {
			r.reasons = append(r.reasons, resp.Status+" "+resp.ReasonCode)
		}
	}
	return r
}

func final(status string) bool {
	return status != "" && status != "IN_PROGRESS" && status != "ACCEPTED" && status != "QUEUED"
}

// idleConfig turns the demo-derived config into a mutual-TLS one (through
// the counting proxy, with a static thing certificate); the GNSS receiver
// reads gnssDevice, or is removed when it is "".
func idleConfig(text, broker, caFile, certFile, keyFile, gnssDevice string) string {
	if gnssDevice == "" {
		if i := strings.Index(text, "# GNSS receiver"); i >= 0 {
			text = text[:i]
		}
	} else if i := strings.Index(text, "# GNSS receiver"); i >= 0 {
		head, gnss := text[:i], text[i:]
		if j := strings.Index(gnss, "\ndevice = "); j >= 0 {
			end := j + 1 + strings.IndexByte(gnss[j+1:]+"\n", '\n')
			gnss = gnss[:j+1] + "device = " + strconv.Quote(gnssDevice) + gnss[min(end, len(gnss)):]
		}
		text = head + gnss
	}
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "thing_name ="), strings.HasPrefix(l, "allow_plaintext ="):
			lines[i] = ""
		case strings.HasPrefix(l, "broker ="):
			lines[i] = `broker = "tls://` + broker + `"` + "\n" + `ca_file = "` + caFile + `"`
		}
	}
	return strings.Replace(strings.Join(lines, "\n"), "[commands]", `[provisioning]
method = "static"
cert_file = "`+certFile+`"
key_file = "`+keyFile+`"
serial_number = "SN-IDLE-1"

[commands]`, 1)
}

// parkedApprox approximates the parked and deep_sleep profiles with plain
// config until [profile] exists: the longest keepalive AWS allows, and
// telemetry records at most hourly (parked) or six-hourly (deep sleep).
func parkedApprox(text, sc string) string {
	interval := "1h"
	if sc == "deep_sleep" {
		interval = "6h"
	}
	text = strings.Replace(text, "[telemetry]\ninterval = \"1s\"", "[telemetry]\ninterval = \""+interval+"\"", 1)
	return strings.Replace(text, "[mqtt]\n", "[mqtt]\nkeep_alive = \"20m\"\n", 1)
}

// wakeOnCommand keeps the vehicle's cyclic messages muted (bus asleep)
// except from the first BODY_COMMAND frame until 5 s after the last one.
func wakeOnCommand(ctx context.Context, s *System, awakeFlag *atomic.Bool) {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	seen, awake, last := 0, false, time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		n := len(s.frames)
		s.mu.Unlock()
		if n > seen {
			seen, last = n, time.Now()
			if !awake {
				s.MuteVehicle(false)
				awake = true
				awakeFlag.Store(true)
			}
		}
		if awake && time.Since(last) > 5*time.Second {
			s.MuteVehicle(true)
			awake = false
			awakeFlag.Store(false)
		}
	}
}

func waitAsleep(s *System, awake *atomic.Bool, timeout time.Duration) {
	s.WaitFor("the bus to sleep again", timeout, func() bool { return !awake.Load() })
}

func firstFrameAfter(s *System, t0 time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.frames {
		if !f.At.Before(t0) {
			return f.At
		}
	}
	return time.Time{}
}

// ctxSwitches sums voluntary and involuntary context switches over the
// process's threads and returns the sum, the involuntary part (preemption:
// grows with the machine's load) and the number of threads.
func ctxSwitches(t *testing.T, pid int) (sum, invol uint64, threads int) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of pid %d: %v", pid, err)
	}
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread ended
		}
		for l := range strings.Lines(string(b)) {
			k, v, ok := strings.Cut(l, ":")
			if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				sum += n
				if k == "nonvoluntary_ctxt_switches" {
					invol += n
				}
			}
		}
	}
	return sum, invol, len(tasks)
}

// cpuTicks is utime + stime of the whole process in clock ticks.
func cpuTicks(t *testing.T, pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command (which may hold spaces) start after ")".
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseUint(f[11], 10, 64) // field 14
	s, _ := strconv.ParseUint(f[12], 10, 64) // field 15
	return u + s
}

func envDuration(t *testing.T, key string, def time.Duration) time.Duration {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return d
}

// countingProxy forwards TCP connections to a target and counts the
// bytes in each direction (TLS records, MQTT inside).
type countingProxy struct {
	ln       net.Listener
	up, down atomic.Int64
}

func startCountingProxy(t *testing.T, target string) *countingProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.serve(c, target) })
		}
	})
	return p
}

func (p *countingProxy) addr() string { return p.ln.Addr().String() }

func (p *countingProxy) serve(c net.Conn, target string) {
	defer func() { _ = c.Close() }()
	u, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer func() { _ = u.Close() }()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn, n *atomic.Int64) {
		buf := make([]byte, 32<<10)
		for {
			k, err := src.Read(buf)
			if k > 0 {
				n.Add(int64(k))
				if _, werr := dst.Write(buf[:k]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go cp(u, c, &p.up)
	go cp(c, u, &p.down)
	<-done
	<-done
}

// nmeaReceiver is a simulated GNSS receiver on a pseudo-terminal: the
// agent's gnss driver opens device as it would a serial receiver.
type nmeaReceiver struct {
	master *os.File
	device string
}

func startNMEAReceiver(t *testing.T) *nmeaReceiver {
	master, slave, err := nmeasim.OpenPTY()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = master.Close() })
	go func() { _, _ = io.Copy(io.Discard, master) }() // the terminal's echo; ends with Close
	return &nmeaReceiver{master: master, device: slave}
}

// feed writes one epoch a second at the vehicle's speed until ctx ends,
// like tcu-sim --nmea-pty: an epoch nobody reads within half a second
// (the port is closed between duty-cycle windows) is dropped.
func (r *nmeaReceiver) feed(ctx context.Context, v *sim.Vehicle) {
	gen := nmeasim.Generator{Talker: "GN", V: nmeasim.Vehicle{
		Time: time.Now().UTC(), Lat: 48.137154, Lon: 11.576124, Alt: 519.4, Course: 72, Sats: 9, HDOP: 0.9,
	}}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		gen.V.Speed = v.State().Speed / 3.6
		gen.V.Time = time.Now().UTC()
		_ = r.master.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		for _, s := range gen.Epoch() {
			if _, err := io.WriteString(r.master, s); err != nil {
				break // dropped: nobody reads
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		gen.Step(time.Second)
	}
}

// watchdogSocket stands in for systemd's notify socket and counts the
// WATCHDOG=1 pings it receives.
type watchdogSocket struct {
	path  string
	pings atomic.Int64
}

func startWatchdogSocket(t *testing.T, path string) *watchdogSocket {
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	w := &watchdogSocket{path: path}
	done := make(chan struct{})
	t.Cleanup(func() { _ = conn.Close(); <-done })
	go func() { // ends when conn is closed
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			if strings.Contains(string(buf[:n]), "WATCHDOG=1") {
				w.pings.Add(1)
			}
		}
	}()
	return w
}

// count is the number of pings so far (0 for nil).
func (w *watchdogSocket) count() int64 {
	if w == nil {
		return 0
	}
	return w.pings.Load()
}
