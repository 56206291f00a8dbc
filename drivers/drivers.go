// Package drivers defines the contract between the agent and vehicle I/O
// drivers (CAN, GNSS, ...) and holds the registry that cmd/tcu-agent links
// drivers into via drivers/all.
//
// A driver reads one bus or device and emits decoded, named samples into a
// Sink. Drivers never import the agent, the buffer or provisioning: they know
// nothing about MQTT, storage or identity.
package drivers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"
)

// A Sample is one observation of one named vehicle signal.
type Sample struct {
	// Name is the stable signal name from the signal map, VSS-style
	// (e.g. "Vehicle.Speed"), or "message.signal" when unmapped.
	Name string
	// Value is the physical value (scale and offset applied).
	Value float64
	// Label is the value-table label for Value ("LOCKED"), or "".
	Label string
	// Time is when the value was observed (kernel receive time where the
	// transport has one).
	Time time.Time
	// Source names the driver instance that produced the sample.
	Source string
}

// A Sink receives samples from a running driver. Emit must not block the
// bus reader: implementations queue or drop (and count) instead.
type Sink interface {
	Emit(Sample)
}

// SinkFunc adapts a function to the Sink interface.
type SinkFunc func(Sample)

// Emit calls f(s).
func (f SinkFunc) Emit(s Sample) { f(s) }

// A Driver reads vehicle state from one bus or device.
type Driver interface {
	// Init validates configuration. It must not touch hardware or network:
	// an Init error is a configuration error and the agent refuses to start.
	Init() error
	// Run reads until ctx is done and returns nil then. It returns an error
	// wrapping ErrNotReady when the device is absent or down (the agent
	// retries with backoff), a *FatalError when retrying is pointless, and
	// any other error otherwise (also retried).
	Run(ctx context.Context, sink Sink) error
}

// A Transmitter is implemented by drivers that can send actuation frames on
// their bus. The message and signal names are those of the driver's DBC;
// the driver encodes them (signals not named take their raw value 0).
type Transmitter interface {
	Transmit(ctx context.Context, message string, signals map[string]float64) error
}

// A LinkReporter is implemented by drivers that keep their device open
// themselves, reconnecting inside Run instead of returning (the can and
// obd drivers): Link reports whether the device is connected now and, if
// not, the last error. The agent shows such a driver as retrying while its
// link is down.
type LinkReporter interface {
	Link() (up bool, lastErr string)
}

// Params are handed to a Factory.
type Params struct {
	// Name is the driver instance's name from config ("body", "gnss").
	Name string
	// Logger is pre-scoped with the driver name.
	Logger *slog.Logger
	// ConfigDir is the directory of the config file; relative paths in the
	// driver's options (DBC files) are resolved against it.
	ConfigDir string
}

// A Factory returns a driver with its defaults set. The agent decodes the
// driver's config table into the returned value (a pointer to a struct with
// `toml:"snake_case"` tags), then calls Init.
type Factory func(Params) Driver

// ErrNotReady means the device is absent or down; the agent retries.
var ErrNotReady = errors.New("device not ready")

// FatalError wraps an error after which restarting the driver is pointless.
type FatalError struct{ Err error }

func (e *FatalError) Error() string { return fmt.Sprintf("fatal: %v", e.Err) }

// Unwrap returns the wrapped error.
func (e *FatalError) Unwrap() error { return e.Err }

var (
	mu        sync.Mutex
	factories = map[string]Factory{} // guarded by mu
)

// Register makes a driver kind available. It is called from init and panics
// on a duplicate kind (a programming error).
func Register(kind string, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := factories[kind]; dup {
		panic("drivers: Register called twice for kind " + kind)
	}
	factories[kind] = f
}

// Lookup returns the factory for kind.
func Lookup(kind string) (Factory, bool) {
	mu.Lock()
	defer mu.Unlock()
	f, ok := factories[kind]
	return f, ok
}

// Kinds lists the registered driver kinds, sorted.
func Kinds() []string {
	mu.Lock()
	defer mu.Unlock()
	ks := make([]string, 0, len(factories))
	for k := range factories {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
