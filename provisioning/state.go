package provisioning

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Steps of the persisted provisioning state machine (state.Step). See
// docs/provisioning.md for the diagram. Introduced in v1.
const (
	stepStart        = ""              // nothing durable yet
	stepKeyGenerated = "key_generated" // device key on disk (csr mode)
	stepCreateSent   = "create_sent"   // create request in flight: a PENDING certificate may exist
	stepCertCreated  = "cert_created"  // certificate + ownership token on disk
	stepRegisterSent = "register_sent" // RegisterThing in flight: the certificate may be ACTIVE
	stepRegistered   = "registered"    // thing name known; identity not yet committed
)

const stateVersion = 1

// state is provisioning.json. It is rewritten atomically after every
// step, so a power cut resumes from the last completed step.
type state struct {
	Version int    `json:"version"`
	Step    string `json:"step"`
	Method  string `json:"method"`
	// KeyFile and CertFile are the in-flight credential files, relative
	// to the identity directory.
	KeyFile  string `json:"key_file,omitempty"`
	CertFile string `json:"cert_file,omitempty"`
	// CertificateID and OwnershipToken come from the create call; the
	// token is reused for RegisterThing until TokenExpires.
	CertificateID  string    `json:"certificate_id,omitempty"`
	OwnershipToken string    `json:"ownership_token,omitempty"`
	TokenExpires   time.Time `json:"token_expires,omitzero"`
	Thing          string    `json:"thing,omitempty"`
	// DeviceConfig is RegisterThing's deviceConfiguration.
	DeviceConfig map[string]string `json:"device_configuration,omitempty"`
	// Creates holds when each create request was sent (loop breaker).
	Creates []time.Time `json:"creates,omitempty"`
	// Rejections counts consecutive non-transient rejections;
	// HoldUntil stops attempts after MaxRejections.
	Rejections   int            `json:"rejections,omitempty"`
	HoldUntil    time.Time      `json:"hold_until,omitzero"`
	LastRejected *RejectedError `json:"last_rejected,omitempty"`
	// Renewal is an in-flight renewal (fleet), persisted before its
	// RegisterThing is sent.
	Renewal *renewal `json:"renewal,omitempty"`
	// Retire lists certificates that may be ACTIVE in the registry but
	// are not (or no longer) the device's identity; each is reported in
	// a certificate event so the backend deactivates it.
	Retire []retirement `json:"retire,omitempty"`
}

// renewal is the persisted part of a fleet renewal between its create
// answer and the commit.
type renewal struct {
	Step           string    `json:"step"` // stepRegisterSent or stepRegistered
	KeyFile        string    `json:"key_file"`
	CertFile       string    `json:"cert_file"`
	CertificateID  string    `json:"certificate_id"`
	OldCertificate string    `json:"old_certificate_id,omitempty"` // retired once committed
	OwnershipToken string    `json:"ownership_token,omitempty"`
	TokenExpires   time.Time `json:"token_expires,omitzero"`
}

// retirement is one pending certificate event.
type retirement struct {
	OldCertificateID string `json:"old_certificate_id"`
	Reason           string `json:"reason"` // "renewed", "orphaned"
}

func readState(dir string) (*state, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return &state{Version: stateVersion}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read provisioning state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil || st.Version != stateVersion {
		// Only this package writes the file, always whole, so an
		// unreadable one means outside interference: start over.
		return &state{Version: stateVersion}, nil
	}
	if !st.sane(dir) {
		if st.Step == stepRegisterSent || st.Step == stepRegistered {
			st.retire(st.CertificateID, "orphaned") // it may be ACTIVE
		}
		st.resetCredential(false) // restart the flow; keep the loop-breaker history
	}
	if r := st.Renewal; r != nil && !saneFile(dir, r.KeyFile) || r != nil && !saneFile(dir, r.CertFile) {
		st.retire(r.CertificateID, "orphaned")
		st.Renewal = nil
	}
	return &st, nil
}

// sane reports whether st's step has the files it needs, as plain names
// inside dir.
func (st *state) sane(dir string) bool {
	createSent := []string{st.KeyFile} // csr mode
	if st.KeyFile == "" {
		createSent = nil // create-keys mode: AWS sends the key
	}
	need := map[string][]string{
		stepStart:        nil,
		stepKeyGenerated: {st.KeyFile},
		stepCreateSent:   createSent,
		stepCertCreated:  {st.KeyFile, st.CertFile, st.OwnershipToken},
		stepRegisterSent: {st.KeyFile, st.CertFile, st.OwnershipToken},
		stepRegistered:   {st.KeyFile, st.CertFile, st.Thing},
	}
	fields, ok := need[st.Step]
	if !ok {
		return false
	}
	for i, v := range fields {
		if v == "" {
			return false
		}
		if i < 2 && !saneFile(dir, v) { // file names
			return false
		}
	}
	return true
}

// saneFile reports whether name is a plain file name that exists in dir.
func saneFile(dir, name string) bool {
	if name == "" || filepath.Base(name) != name || name == "." || name == ".." {
		return false
	}
	_, err := os.Stat(filepath.Join(dir, name))
	return err == nil
}

// retire queues a certificate event for id (no-op for an empty or
// already queued id).
func (st *state) retire(id, reason string) {
	if id == "" {
		return
	}
	for _, r := range st.Retire {
		if r.OldCertificateID == id {
			return
		}
	}
	st.Retire = append(st.Retire, retirement{OldCertificateID: id, Reason: reason})
}

func (st *state) save(dir string) error {
	st.Version = stateVersion
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode provisioning state: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, stateFile), b, 0o600); err != nil {
		return fmt.Errorf("save provisioning state: %w", err)
	}
	return nil
}

// resetCredential forgets the in-flight certificate and token, keeping the
// key in csr mode so a retry does not need a new one.
func (st *state) resetCredential(keepKey bool) {
	st.CertFile, st.CertificateID, st.OwnershipToken = "", "", ""
	st.TokenExpires, st.Thing, st.DeviceConfig = time.Time{}, "", nil
	st.Step = stepStart
	if keepKey && st.KeyFile != "" {
		st.Step = stepKeyGenerated
	} else {
		st.KeyFile = ""
	}
}

// recentCreates drops create timestamps older than window and returns how
// many remain.
func (st *state) recentCreates(now time.Time, window time.Duration) int {
	kept := st.Creates[:0]
	for _, t := range st.Creates {
		if now.Sub(t) < window {
			kept = append(kept, t)
		}
	}
	st.Creates = kept
	return len(kept)
}
