// Package abstore keeps the configuration bundles a job delivered in two
// slots, a and b, under <state_dir>/config/, with a state file that says
// which slot is active, which is the last-known-good, and whether the
// active one is on trial (since when, how many starts).
//
// Every change is crash safe: a slot is written to a temporary directory,
// fsynced and renamed into place; the state file is written to a
// temporary file, fsynced, renamed over the old one and the directory
// fsynced. The last-known-good slot is never written to: a new bundle
// always goes to the other slot. A crash at any point therefore leaves a
// state file naming complete slots (or the operator's --config file).
package abstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/jobs/bundle"
	"github.com/tcu-agent/tcu-agent/internal/fsutil"
)

// stateFile is the state's name inside the store directory.
const stateFile = "state.json"

// Meta describes a bundle.
type Meta struct {
	JobID   string `json:"job_id,omitempty"`
	Version string `json:"version,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
}

// Trial is a bundle being proven.
type Trial struct {
	Meta
	Slot    string    `json:"slot"`
	Started time.Time `json:"started"`
	// Boots counts process starts on the trial config.
	Boots int `json:"boots"`
}

// Result is the outcome of the last job the store decided on by itself
// or that is not reported yet.
type Result struct {
	JobID  string `json:"job_id"`
	Status string `json:"status"` // SUCCEEDED or FAILED
	Reason string `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// State is the persisted state.
type State struct {
	// Good is the last-known-good slot ("" = the --config file).
	Good     string `json:"good"`
	GoodMeta Meta   `json:"good_meta"`
	// Trial is the bundle on trial, nil when the good one is active.
	Trial *Trial `json:"trial,omitempty"`
	// Result is a job outcome decided but maybe not reported yet.
	Result *Result `json:"result,omitempty"`
}

// Active returns the slot to run ("" = the --config file) and its meta.
func (s State) Active() (string, Meta) {
	if s.Trial != nil {
		return s.Trial.Slot, s.Trial.Meta
	}
	return s.Good, s.GoodMeta
}

// Store is an open A/B store.
type Store struct {
	dir string
	// Step, if set, is called after every durable step ("slot-written",
	// "slot-renamed", "state-written", ...); an error stops the operation
	// there as a crash would (tests).
	Step func(step string) error
}

// Open returns the store in dir (created if missing).
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open config store: %w", err)
	}
	return &Store{dir: dir}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// ConfigPath returns the configuration file of slot ("" for "").
func (s *Store) ConfigPath(slot string) string {
	if slot == "" {
		return ""
	}
	return filepath.Join(s.dir, slot, bundle.ConfigName)
}

// Load reads the state; a missing file is the zero State.
func (s *Store) Load() (State, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("read config store state: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, fmt.Errorf("%w: %s: %w", ErrCorrupt, filepath.Join(s.dir, stateFile), err)
	}
	if !validSlot(st.Good) || (st.Trial != nil && (st.Trial.Slot == "" || !validSlot(st.Trial.Slot) || st.Trial.Slot == st.Good)) {
		return State{}, fmt.Errorf("%w: %s: bad slots", ErrCorrupt, filepath.Join(s.dir, stateFile))
	}
	return st, nil
}

func validSlot(s string) bool { return s == "" || s == "a" || s == "b" }

func (s *Store) step(name string) error {
	if s.Step != nil {
		if err := s.Step(name); err != nil {
			return fmt.Errorf("config store: stopped after %s: %w", name, err)
		}
	}
	return nil
}

// Save replaces the state atomically.
func (s *Store) Save(st State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode config store state: %w", err)
	}
	tmp := filepath.Join(s.dir, stateFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write config store state: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write config store state: %w", err)
	}
	if err := s.step("state-written"); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, stateFile)); err != nil {
		return fmt.Errorf("replace config store state: %w", err)
	}
	if err := s.step("state-renamed"); err != nil {
		return err
	}
	if err := fsutil.SyncDir(s.dir); err != nil {
		return fmt.Errorf("sync config store: %w", err)
	}
	return s.step("state-synced")
}

// ErrCorrupt means the state file does not decode (damaged medium).
var ErrCorrupt = errors.New("config store state is damaged")

// ErrBusy means a bundle is on trial: one job at a time.
var ErrBusy = errors.New("a configuration bundle is already on trial")

// Stage writes entries into the slot that is not the last-known-good
// and returns that slot. Nothing points at it until BeginTrial.
func (s *Store) Stage(entries []bundle.Entry) (string, error) {
	st, err := s.Load()
	if err != nil {
		return "", err
	}
	if st.Trial != nil {
		return "", ErrBusy
	}
	slot := "a"
	if st.Good == "a" {
		slot = "b"
	}
	tmp := filepath.Join(s.dir, slot+".new")
	if err := os.RemoveAll(tmp); err != nil {
		return "", fmt.Errorf("stage bundle: %w", err)
	}
	if err := bundle.Write(tmp, entries); err != nil {
		return "", fmt.Errorf("stage bundle: %w", err)
	}
	if err := s.step("slot-written"); err != nil {
		return "", err
	}
	dst := filepath.Join(s.dir, slot)
	if err := os.RemoveAll(dst); err != nil {
		return "", fmt.Errorf("stage bundle: %w", err)
	}
	if err := s.step("slot-removed"); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", fmt.Errorf("stage bundle: %w", err)
	}
	if err := s.step("slot-renamed"); err != nil {
		return "", err
	}
	if err := fsutil.SyncDir(s.dir); err != nil {
		return "", fmt.Errorf("stage bundle: %w", err)
	}
	return slot, s.step("slot-synced")
}

// BeginTrial makes slot the active configuration, on trial for job m.
// boots is the starts already made on it (0 when the running process
// applies it live, and the restart that follows counts as the first).
func (s *Store) BeginTrial(slot string, m Meta, now time.Time) error {
	st, err := s.Load()
	if err != nil {
		return err
	}
	if st.Trial != nil {
		return ErrBusy
	}
	if slot == st.Good || !validSlot(slot) || slot == "" {
		return fmt.Errorf("begin trial: slot %q is the last-known-good", slot)
	}
	st.Trial = &Trial{Meta: m, Slot: slot, Started: now}
	st.Result = nil
	return s.Save(st)
}

// Boot is called once per process start, before the configuration is
// loaded: it counts a start on a trial configuration and rolls back when
// the trial has started more than maxBoots times without being
// committed (a crash loop). It returns the state to run with.
func (s *Store) Boot(maxBoots int) (State, error) {
	st, err := s.Load()
	if err != nil {
		return State{}, err
	}
	if st.Trial == nil {
		return st, nil
	}
	st.Trial.Boots++
	if st.Trial.Boots > maxBoots {
		return s.rollback(st, bundle.ReasonCrashLoop,
			fmt.Sprintf("the new configuration started %d times without becoming healthy", st.Trial.Boots-1))
	}
	return st, s.Save(st)
}

// Commit makes the trial the last-known-good and records SUCCEEDED.
func (s *Store) Commit() (State, error) {
	st, err := s.Load()
	if err != nil {
		return State{}, err
	}
	if st.Trial == nil {
		return st, errors.New("commit: no trial")
	}
	t := st.Trial
	st.Good, st.GoodMeta, st.Trial = t.Slot, t.Meta, nil
	st.Result = &Result{JobID: t.JobID, Status: "SUCCEEDED"}
	return st, s.Save(st)
}

// Rollback ends the trial: the last-known-good is active again and the
// job's result is FAILED with reason.
func (s *Store) Rollback(reason, detail string) (State, error) {
	st, err := s.Load()
	if err != nil {
		return State{}, err
	}
	if st.Trial == nil {
		return st, nil
	}
	return s.rollback(st, reason, detail)
}

func (s *Store) rollback(st State, reason, detail string) (State, error) {
	st.Result = &Result{JobID: st.Trial.JobID, Status: "FAILED", Reason: reason, Detail: detail}
	st.Trial = nil
	return st, s.Save(st)
}

// ClearResult forgets the result once it was reported.
func (s *Store) ClearResult(jobID string) error {
	st, err := s.Load()
	if err != nil {
		return err
	}
	if st.Result == nil || st.Result.JobID != jobID {
		return nil
	}
	st.Result = nil
	return s.Save(st)
}
