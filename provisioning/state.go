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
	stepCertCreated  = "cert_created"  // certificate + ownership token on disk
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
		st.resetCredential(false) // restart the flow; keep the loop-breaker history
	}
	return &st, nil
}

// sane reports whether st's step has the files it needs, as plain names
// inside dir.
func (st *state) sane(dir string) bool {
	need := map[string][]string{
		stepStart:        nil,
		stepKeyGenerated: {st.KeyFile},
		stepCertCreated:  {st.KeyFile, st.CertFile, st.OwnershipToken},
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
		if i < 2 { // file names
			if filepath.Base(v) != v || v == "." || v == ".." {
				return false
			}
			if _, err := os.Stat(filepath.Join(dir, v)); err != nil {
				return false
			}
		}
	}
	return true
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
