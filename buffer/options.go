package buffer

import (
	"fmt"
	"log/slog"
	"time"
)

// Class is a record's priority class. Lower values are more important: they
// are leased first and evicted last.
type Class uint8

// Priority classes.
const (
	// ClassCritical holds command results/responses and alarms. It is never
	// evicted while a record of another class exists.
	ClassCritical Class = 0
	// ClassEvent holds events and state changes.
	ClassEvent Class = 1
	// ClassTelemetry holds periodic telemetry; it is evicted first.
	ClassTelemetry Class = 2

	// NumClasses is the number of classes; Stats.Classes is indexed by Class.
	NumClasses = 3
)

func (c Class) valid() bool { return c < NumClasses }

// String returns the class name used in logs and metrics.
func (c Class) String() string {
	switch c {
	case ClassCritical:
		return "critical"
	case ClassEvent:
		return "event"
	case ClassTelemetry:
		return "telemetry"
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// SyncPolicy says when appended records reach stable storage.
type SyncPolicy string

// Sync policies. See docs/buffer.md for their flash-wear cost.
const (
	// SyncAlways syncs before every Append returns; concurrent appends
	// that are committed together share the sync, but nobody waits for
	// company. Most flash wear: one sync per commit.
	SyncAlways SyncPolicy = "always"
	// SyncGroup collects the appends of one window and syncs them
	// together. The window is adaptive: at least GroupWindow, and longer,
	// up to GroupMaxWindow, until GroupFill bytes of records are pending,
	// so that a sync writes whole flash pages at a vehicle's low rates
	// instead of rewriting one partial page 50 times a second. At most
	// 1/GroupWindow syncs per second; an Append waits up to
	// GroupMaxWindow (a critical record ends the window at once).
	SyncGroup SyncPolicy = "group"
	// SyncNone never syncs on Append: records reach the page cache and
	// survive a process crash but not a power cut. Least wear. On restart
	// the seq jumps to the reserved high-water mark (seqfile.go) so a seq
	// lost in a power cut is never reused.
	SyncNone SyncPolicy = "none"
)

// Defaults.
const (
	DefaultMaxBytes    = 64 << 20
	DefaultGroupWindow = 20 * time.Millisecond
	MaxGroupWindow     = 50 * time.Millisecond
	// DefaultGroupMaxWindow bounds the adaptive window (Options.
	// GroupMaxWindow): the longest a group Append waits for company, and
	// so the records a producer can have in flight, not yet stored, when
	// the power is cut. Chosen by the wear benchmark (docs/perf/buffer.md).
	DefaultGroupMaxWindow = 500 * time.Millisecond
	// LimitGroupMaxWindow is the largest GroupMaxWindow accepted.
	LimitGroupMaxWindow = 2 * time.Second
	// DefaultGroupFill is the pending data that ends an adaptive window
	// early (Options.GroupFill): 64 KiB is 16 file-system blocks, several
	// eMMC pages.
	DefaultGroupFill  = 64 << 10
	DefaultLiveWindow = 10 * time.Second
	DefaultGCInterval = time.Minute
	// DefaultIdleClose is how long the store stays open unused
	// (Options.IdleClose): long enough that a moving vehicle's appends
	// (every few seconds at most) never close it, short enough that a
	// parked one spends its hours with the store closed.
	DefaultIdleClose = time.Minute
	// MaxRecordBytes is the largest record Append accepts (AWS IoT's
	// message limit is 128 KB; a record is at most one message).
	MaxRecordBytes = 256 << 10
)

// Options configures a Queue. The zero value of every field but Dir means
// "default".
type Options struct {
	// Dir is the store directory (ignored when InMemory). A small seq
	// high-water file is kept next to it as Dir+".seq".
	Dir string
	// InMemory keeps everything in memory (tests).
	InMemory bool
	// MaxBytes caps the accounted bytes of all records (key + header +
	// data); 0 means DefaultMaxBytes. Badger's own overhead and value-log
	// garbage come on top: budget about 2x on disk (docs/buffer.md).
	MaxBytes int64
	// MaxRecords optionally caps the number of records (0 = no cap).
	MaxRecords int64
	// Sync is the durability policy; "" means SyncGroup.
	Sync SyncPolicy
	// GroupWindow is the shortest time SyncGroup collects appends before
	// one sync; 0 means DefaultGroupWindow, at most MaxGroupWindow.
	GroupWindow time.Duration
	// GroupMaxWindow is the longest: after GroupWindow the window goes on
	// until GroupFill bytes of records are pending or GroupMaxWindow has
	// passed since it began. 0 means DefaultGroupMaxWindow; a value below
	// GroupWindow means GroupWindow (a fixed window, no adaptation); at
	// most LimitGroupMaxWindow. It is the group policy's power-cut loss
	// window: records appended less than this before a cut may not be
	// stored (their Append has not returned).
	GroupMaxWindow time.Duration
	// GroupFill ends an adaptive window once this many bytes of record
	// data are pending; 0 means DefaultGroupFill.
	GroupFill int64
	// TTL optionally drops records of a class older than the duration.
	TTL map[Class]time.Duration
	// LiveWindow: records younger than this are "live" and leased before
	// the backlog of their class, newest first. 0 means DefaultLiveWindow;
	// a negative value disables the live rule (pure oldest-first).
	LiveWindow time.Duration
	// GCInterval is the period of range drops and value-log GC; 0 means
	// DefaultGCInterval.
	GCInterval time.Duration
	// IdleClose closes the Badger store after it has not been used for
	// this long (no append, lease, ack or TTL expiry) and reopens it on
	// the next use: an open store costs a parked TCU wake-ups that no
	// Badger option turns off (idle.go, docs/buffer.md "Idle close").
	// 0 means DefaultIdleClose; negative never closes it.
	IdleClose time.Duration
	// MinFree is the space guard's floor: the free bytes the queue keeps
	// on the file system holding Dir (guard.go, docs/buffer.md "Disk
	// space"). 0 means automatic: 1/8 of the file system's size, at least
	// 2 MiB and at most 32 MiB. Negative disables the guard.
	MinFree int64
	// Logger receives the queue's and Badger's logs (Badger's info is
	// logged at debug). nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// valueThreshold overrides the value-log threshold (benchmarks); 0
	// means valueThreshold, or alwaysValueThreshold under SyncAlways.
	valueThreshold int64
	// memTableSize overrides Badger's memtable size (tests); 0 means
	// badgerOptions' default.
	memTableSize int64
	// noCompact disables the queue's level-0 compactor (tests build
	// level-0-heavy stores with it).
	noCompact bool
	// faultHook, when set, is called at the points where the store is
	// read (tests inject panics there).
	faultHook func(op string)
	// idleFixed keeps the idle-close wait at IdleClose (tests).
	idleFixed bool
	// idleCloseWait overrides idleCloseWait (tests): how long a close
	// (idle or of a failed store) is waited for.
	idleCloseWait time.Duration
	// vlogFileSize is the value-log file size for the file system (0 =
	// maxVlogFileSize); set by Open.
	vlogFileSize int64
	// diskSpace reports the free and total bytes of the file system
	// holding a path; tests override it to simulate a full disk.
	diskSpace func(path string) (free, total uint64, err error)
}

// DefaultOptions returns the defaults for a store in dir.
func DefaultOptions(dir string) Options {
	return Options{
		Dir:            dir,
		MaxBytes:       DefaultMaxBytes,
		Sync:           SyncGroup,
		GroupWindow:    DefaultGroupWindow,
		GroupMaxWindow: DefaultGroupMaxWindow,
		GroupFill:      DefaultGroupFill,
		LiveWindow:     DefaultLiveWindow,
		GCInterval:     DefaultGCInterval,
		IdleClose:      DefaultIdleClose,
	}
}

// withDefaults validates o and fills in defaults.
func (o Options) withDefaults() (Options, error) {
	if !o.InMemory && o.Dir == "" {
		return o, fmt.Errorf("open queue: %w: empty Dir", ErrInvalid)
	}
	switch o.Sync {
	case "":
		o.Sync = SyncGroup
	case SyncAlways, SyncGroup, SyncNone:
	default:
		return o, fmt.Errorf("open queue: %w: sync policy %q (want always, group or none)", ErrInvalid, o.Sync)
	}
	if o.GroupWindow == 0 {
		o.GroupWindow = DefaultGroupWindow
	}
	if o.GroupWindow < 0 || o.GroupWindow > MaxGroupWindow {
		return o, fmt.Errorf("open queue: %w: group window %v (want 0 < w <= %v)", ErrInvalid, o.GroupWindow, MaxGroupWindow)
	}
	if o.GroupMaxWindow == 0 {
		o.GroupMaxWindow = DefaultGroupMaxWindow
	}
	if o.GroupMaxWindow > LimitGroupMaxWindow {
		return o, fmt.Errorf("open queue: %w: group max window %v (want at most %v)", ErrInvalid, o.GroupMaxWindow, LimitGroupMaxWindow)
	}
	o.GroupMaxWindow = max(o.GroupMaxWindow, o.GroupWindow)
	if o.GroupFill == 0 {
		o.GroupFill = DefaultGroupFill
	}
	if o.GroupFill < 0 {
		return o, fmt.Errorf("open queue: %w: group fill %d", ErrInvalid, o.GroupFill)
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxBytes < 0 || o.MaxRecords < 0 {
		return o, fmt.Errorf("open queue: %w: negative cap", ErrInvalid)
	}
	for c, d := range o.TTL {
		if !c.valid() || d < 0 {
			return o, fmt.Errorf("open queue: %w: ttl %v for %v", ErrInvalid, d, c)
		}
	}
	if o.LiveWindow == 0 {
		o.LiveWindow = DefaultLiveWindow
	}
	if o.GCInterval <= 0 {
		o.GCInterval = DefaultGCInterval
	}
	if o.IdleClose == 0 {
		o.IdleClose = DefaultIdleClose
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.valueThreshold == 0 {
		o.valueThreshold = valueThreshold
		if o.Sync == SyncAlways {
			o.valueThreshold = alwaysValueThreshold
		}
	}
	if o.diskSpace == nil {
		o.diskSpace = diskSpace
	}
	return o, nil
}
