// Package ctl is the agent's local control socket: a unix socket (default
// /run/tcu-agent/ctl.sock, mode 0660) serving the running agent's status as
// JSON over HTTP/1.1, and the client that `tcu-agent status` uses.
//
// The wire types here are the socket's contract; they use only the standard
// library so that the client does not depend on the agent's internals.
// Fields are only ever added (clients ignore unknown fields).
package ctl

import "time"

// DefaultSocket is where the agent listens unless configured otherwise
// ([health] ctl_socket); the directory is the unit's RuntimeDirectory.
const DefaultSocket = "/run/tcu-agent/ctl.sock"

// StatusPath is the HTTP path of the status document.
const StatusPath = "/v1/status"

// Status is the running agent's state, as served by Serve and returned by
// Query. Durations are in seconds (floating point) for readability in jq.
type Status struct {
	// Version is the agent's build version.
	Version string `json:"version"`
	// Time is when the status was taken.
	Time time.Time `json:"time"`
	// StartedAt is when the agent process started.
	StartedAt time.Time `json:"started_at"`

	Identity   Identity   `json:"identity"`
	Connection Connection `json:"connection"`
	// Queues holds the store-and-forward queue per record class
	// (telemetry, event, command_result, ...).
	Queues []Queue `json:"queues"`
	// Store describes the queue's store as a whole.
	Store Store `json:"store"`
	// OldestUnsentSeconds is the age of the oldest record not yet
	// acknowledged by the cloud, over all classes (0 when empty).
	OldestUnsentSeconds float64 `json:"oldest_unsent_seconds"`
	// Buses holds per-bus (CAN interface, serial port) counters.
	Buses []Bus `json:"buses"`
	// LastCommand is the most recent remote command, nil if none yet.
	LastCommand *Command `json:"last_command,omitempty"`
	// Commands counts remote commands since the agent started.
	Commands Commands `json:"commands"`
	Health   Health   `json:"health"`
	// Profile is the vehicle-state profile in effect; nil when the agent
	// runs without profiles.
	Profile *Profile `json:"profile,omitempty"`
	// Config is the active configuration bundle (remote configuration
	// over Jobs); nil when [jobs] is off.
	Config *ConfigBundle `json:"config,omitempty"`
}

// Profile is the vehicle-state profile in effect and the battery guard.
type Profile struct {
	// Name is the profile in effect ("driving", "parked", "deep_sleep").
	Name string `json:"name"`
	// Reason says why: the rule that matched with the values seen, the
	// operator's force, or the battery guard.
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
	// Forced is true when [profile] force pins the profile.
	Forced bool `json:"forced,omitempty"`
	// Battery is the battery guard's level: "normal", "low", "critical".
	Battery       string `json:"battery"`
	BatteryReason string `json:"battery_reason,omitempty"`
	// Voltage is the last battery voltage seen, if any.
	Voltage *float64 `json:"voltage,omitempty"`
	// Publish lists the record classes published; empty means all (the
	// others stay buffered).
	Publish []string `json:"publish,omitempty"`
	// TelemetryIntervalSeconds is the telemetry interval in effect.
	TelemetryIntervalSeconds float64 `json:"telemetry_interval_seconds,omitempty"`
}

// ConfigBundle is the configuration the agent runs.
type ConfigBundle struct {
	// Version is the bundle's version, "base" for the --config file.
	Version string `json:"version"`
	SHA256  string `json:"sha256,omitempty"`
	JobID   string `json:"job_id,omitempty"`
	// Slot is the A/B slot ("a", "b"; empty for the --config file).
	Slot string `json:"slot,omitempty"`
	// Trial is true while the bundle is being proven.
	Trial   bool       `json:"trial,omitempty"`
	LastJob *ConfigJob `json:"last_job,omitempty"`
}

// ConfigJob is the last configuration job's outcome.
type ConfigJob struct {
	ID      string `json:"id"`
	Version string `json:"version,omitempty"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
}

// Identity is the device identity in use.
type Identity struct {
	// Thing is the provisioned thing name (also the MQTT client ID); empty
	// while not provisioned.
	Thing string `json:"thing"`
	// Source says where the identity came from: "provisioned" (fleet
	// provisioning by claim), "static" (certificate installed by the
	// operator), "provisioning" (in progress) or "none".
	Source string `json:"source"`
	// CertExpiry is the device certificate's NotAfter; zero when none.
	CertExpiry time.Time `json:"cert_expiry,omitzero"`
	// VIN is the vehicle identification number a driver (obd) read; empty
	// until one has.
	VIN string `json:"vin,omitempty"`
}

// Connection is the MQTT session's state.
type Connection struct {
	// State is "connected", "connecting", "offline" or "disabled".
	State string `json:"state"`
	// Endpoint is the broker address.
	Endpoint string `json:"endpoint,omitempty"`
	// Since is when State last changed.
	Since time.Time `json:"since,omitzero"`
	// Reconnects counts reconnects since start.
	Reconnects uint64 `json:"reconnects"`
	// LastError is the most recent connection error, if any.
	LastError string `json:"last_error,omitempty"`
	// Published and Acked count telemetry publishes and their PUBACKs.
	Published uint64 `json:"published"`
	Acked     uint64 `json:"acked"`
}

// Queue is one record class in the store-and-forward buffer.
type Queue struct {
	Class   string `json:"class"`
	Records int64  `json:"records"`
	Bytes   int64  `json:"bytes"`
	// OldestUnsentSeconds is the age of the class's oldest unsent record.
	OldestUnsentSeconds float64 `json:"oldest_unsent_seconds"`
	// Evicted counts records dropped because the buffer was full.
	Evicted uint64 `json:"evicted"`
	// Shed counts records refused because only more important records
	// could have been evicted (or the disk was nearly full).
	Shed uint64 `json:"shed"`
	// Expired counts records dropped by the class's TTL.
	Expired uint64 `json:"expired"`
}

// Store is the store-and-forward buffer as a whole.
type Store struct {
	// Leased counts records handed to the uplink and not yet acknowledged.
	Leased int `json:"leased"`
	// Appends and Syncs count appends and store syncs since the agent
	// started (syncs per append shows the flash cost of the sync policy).
	Appends uint64 `json:"appends"`
	Syncs   uint64 `json:"syncs"`
	// Corrupt counts records dropped because their chunk did not decode.
	Corrupt uint64 `json:"corrupt"`
	// Torn counts never-acknowledged records dropped at start because a
	// power cut tore them before they were synced (not an error).
	Torn uint64 `json:"torn"`
	// DiskBytes is the store directory's size at the last GC pass.
	DiskBytes int64 `json:"disk_bytes"`
	// Closed: the store is closed because nothing used it for [buffer]
	// idle_close (parked); the next record, send or ack reopens it.
	Closed bool `json:"closed"`
	// Reopens counts reopens after an idle close since the agent started.
	Reopens uint64 `json:"reopens"`
	// Held counts records held in memory because the store refuses
	// them (storage fault); they are written once it takes them again.
	Held int64 `json:"held,omitempty"`
	// HeldDropped counts records lost because more were held than the
	// bound ([telemetry] max_pending) or the store never took them.
	HeldDropped uint64 `json:"held_dropped,omitempty"`
}

// Bus is one vehicle bus or device read by a driver.
type Bus struct {
	// Name is the interface or device ("can0", "/dev/ttyS1").
	Name string `json:"name"`
	// Driver is the driver instance name from the config.
	Driver string `json:"driver,omitempty"`
	// State is the driver's state ("running", "restarting", "down", ...).
	State        string  `json:"state"`
	FramesPerSec float64 `json:"frames_per_sec"`
	Frames       uint64  `json:"frames"`
	DecodeErrors uint64  `json:"decode_errors"`
	// KernelDrops counts frames the kernel dropped (SO_RXQ_OVFL).
	KernelDrops uint64 `json:"kernel_drops"`
	// Errors counts bus errors (error frames, bus-off, I/O errors).
	Errors    uint64 `json:"errors"`
	LastError string `json:"last_error,omitempty"`
}

// Command is a remote command's latest outcome.
type Command struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Status is the AWS IoT Commands status (IN_PROGRESS, SUCCEEDED,
	// FAILED, REJECTED, TIMED_OUT).
	Status string `json:"status"`
	// Reason is the machine-readable reason code, if any.
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// Commands counts remote command outcomes and the vehicle network wake-ups
// sent for them since the agent started.
type Commands struct {
	// Succeeded, Failed, Rejected and TimedOut count final responses by
	// status.
	Succeeded uint64 `json:"succeeded"`
	Failed    uint64 `json:"failed"`
	Rejected  uint64 `json:"rejected"`
	TimedOut  uint64 `json:"timed_out"`
	// Wakes counts wake-ups of the vehicle network ([[commands.wake]])
	// sent for commands whose interlock inputs were stale, as on a
	// sleeping bus; coalesced wake-ups count once.
	Wakes uint64 `json:"wakes"`
}

// Health is the liveness summary (from agent/health).
type Health struct {
	// OK is false when a critical loop is hung (watchdog pings withheld).
	OK bool `json:"ok"`
	// Why explains OK in one line: hung loops, degraded components or "ok".
	Why      string     `json:"why"`
	Loops    []Loop     `json:"loops,omitempty"`
	Degraded []Degraded `json:"degraded,omitempty"`
}

// Loop is one monitored loop.
type Loop struct {
	Name     string `json:"name"`
	Critical bool   `json:"critical"`
	// AgeSeconds is the time since the loop's last heartbeat.
	AgeSeconds float64 `json:"age_seconds"`
}

// Degraded is one component working in a degraded mode.
type Degraded struct {
	Component string    `json:"component"`
	Reason    string    `json:"reason"`
	Since     time.Time `json:"since"`
}
