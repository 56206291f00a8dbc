package uplink

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Adaptive keep-alive ([mqtt] adaptive_keep_alive): the CONNECT keep-alive
// stays keep_alive (the broker's LWT timer and the upper bound); the
// session pings on its own after an idle gap of the learned interval,
// which starts at adaptiveMin, climbs ×1.5 after two idle gaps answered
// at the same interval, and falls back to the last interval that held
// when a ping after an idle gap goes unanswered (the path dropped the
// idle connection: a carrier NAT). The interval learned is kept per
// network in the state dir.

// adaptiveMin is the shortest learned interval (AWS's shortest keep-alive).
var adaptiveMin = AWSMinKeepAlive

// adaptiveStreak is how many answered idle gaps an interval needs before
// the next probe.
const adaptiveStreak = 2

// ceilingTTL is how long a failed interval is not probed again.
const ceilingTTL = 24 * time.Hour

// kaNet is what was learned on one network.
type kaNet struct {
	Good    time.Duration `json:"good"`              // longest interval that held
	Probe   time.Duration `json:"probe,omitempty"`   // interval being tried (> Good)
	Ceiling time.Duration `json:"ceiling,omitempty"` // shortest interval that failed
	Streak  int           `json:"streak,omitempty"`  // answered gaps at the current interval
	Failed  time.Time     `json:"failed,omitzero"`   // when Ceiling was set
}

// kaLearner learns the keep-alive interval per network. It is safe for
// concurrent use.
type kaLearner struct {
	path string // state file; "" = memory only
	log  *slog.Logger
	key  func() string
	min  time.Duration // shortest interval (adaptiveMin when created)

	mu   sync.Mutex
	nets map[string]*kaNet // guarded by mu
}

func newKALearner(stateDir string, log *slog.Logger) *kaLearner {
	l := &kaLearner{log: log, key: networkKey, min: adaptiveMin, nets: make(map[string]*kaNet)}
	if stateDir != "" {
		l.path = filepath.Join(stateDir, "uplink-keepalive.json")
		if b, err := os.ReadFile(l.path); err == nil {
			if err := json.Unmarshal(b, &l.nets); err != nil {
				log.Warn("adaptive keep-alive: state unreadable, starting over", "file", l.path, "err", err)
				l.nets = make(map[string]*kaNet)
			}
		}
	}
	return l
}

// interval is the ping interval to use now on network key, at most upper.
func (l *kaLearner) interval(key string, upper time.Duration) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.netLocked(key)
	if !n.Failed.IsZero() && time.Since(n.Failed) > ceilingTTL {
		n.Ceiling, n.Failed = 0, time.Time{}
	}
	k := n.Good
	if n.Probe > 0 {
		k = n.Probe
	}
	return min(upper, k)
}

func (l *kaLearner) netLocked(key string) *kaNet {
	n := l.nets[key]
	if n == nil {
		n = &kaNet{Good: l.min}
		l.nets[key] = n
	}
	n.Good = max(n.Good, l.min)
	return n
}

// held notes that an idle gap of k was answered on network key.
func (l *kaLearner) held(key string, k, upper time.Duration) {
	l.mu.Lock()
	n := l.netLocked(key)
	if k < n.Good || n.Probe > 0 && k < n.Probe {
		l.mu.Unlock()
		return // an older, shorter interval: nothing new
	}
	n.Streak++
	if n.Streak < adaptiveStreak {
		l.mu.Unlock()
		return
	}
	n.Streak = 0
	n.Good = max(n.Good, k)
	n.Probe = 0
	next := min(upper, n.Good*3/2)
	if n.Ceiling > 0 {
		// Approach a known ceiling by halving the distance; stop within 10 %.
		next = min(next, n.Good+(n.Ceiling-n.Good)/2)
		if n.Ceiling-n.Good <= n.Good/10 {
			next = n.Good
		}
	}
	changed := next > n.Good
	if changed {
		n.Probe = next
	}
	snap, good := l.snapshotLocked(), n.Good
	l.mu.Unlock()
	if changed {
		l.log.Info("adaptive keep-alive: probing a longer interval", "network", key, "held", good, "probe", next)
	}
	l.save(snap)
}

// dropped notes that the path dropped the connection after an idle gap
// of k on network key.
func (l *kaLearner) dropped(key string, k time.Duration) {
	l.mu.Lock()
	n := l.netLocked(key)
	n.Streak = 0
	n.Probe = 0
	if n.Ceiling == 0 || k < n.Ceiling {
		n.Ceiling = k
	}
	n.Failed = time.Now()
	if k <= n.Good { // what held before does not any more
		n.Good = max(l.min, k*2/3)
	}
	good := n.Good
	snap := l.snapshotLocked()
	l.mu.Unlock()
	l.log.Warn("adaptive keep-alive: idle connection dropped by the path, falling back", "network", key, "failed", k, "interval", good)
	l.save(snap)
}

func (l *kaLearner) snapshotLocked() []byte {
	b, _ := json.MarshalIndent(l.nets, "", "  ")
	return b
}

// save writes the state atomically (temporary file, fsync, rename, fsync
// of the directory).
func (l *kaLearner) save(b []byte) {
	if l.path == "" {
		return
	}
	if err := writeAtomic(l.path, b); err != nil {
		l.log.Warn("adaptive keep-alive: state not saved", "err", err)
	}
}

func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".uplink-keepalive-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// networkKey names the network the device is on: the interface and
// gateway of the IPv4 default route (/proc/net/route), e.g. "wwan0 via
// 10.64.64.64"; "default" when there is none or it cannot be read. A
// different SIM/APN or Wi-Fi hotspot behind another gateway learns its
// own interval.
func networkKey() string {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return "default"
	}
	defer func() { _ = f.Close() }()
	return parseRoute(bufio.NewScanner(f))
}

// parseRoute picks the default route with the lowest metric.
func parseRoute(sc *bufio.Scanner) string {
	best, bestMetric := "default", -1
	for first := true; sc.Scan(); first = false {
		fs := strings.Fields(sc.Text())
		if first || len(fs) < 8 || fs[1] != "00000000" || fs[7] != "00000000" {
			continue
		}
		metric, err := strconv.Atoi(fs[6])
		if err != nil || bestMetric >= 0 && metric >= bestMetric {
			continue
		}
		gw, err := strconv.ParseUint(fs[2], 16, 32)
		if err != nil {
			continue
		}
		// /proc/net/route prints the address in host (little-endian) order.
		ip := fmt.Sprintf("%d.%d.%d.%d", gw&0xff, gw>>8&0xff, gw>>16&0xff, gw>>24)
		best, bestMetric = fs[0]+" via "+ip, metric
	}
	return best
}

// errNoPing: the connection cannot take our own PINGREQ.
var errNoPing = errors.New("no connection to ping on")
