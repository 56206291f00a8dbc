package provisioningtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"time"
)

// Certificate states, as AWS IoT names them.
const (
	StatusPending  = "PENDING_ACTIVATION" // minted, RegisterThing not yet accepted
	StatusActive   = "ACTIVE"             // registered to a thing
	StatusInactive = "INACTIVE"           // deactivated (certificate event)
)

// Certificate is one certificate in the fake's registry.
type Certificate struct {
	ID     string    `json:"id"` // hex SHA-256 of the DER, like AWS's certificateId
	Status string    `json:"status"`
	Thing  string    `json:"thing,omitempty"`
	Minted time.Time `json:"minted"`
}

// registry is the certificate registry, optionally kept in a file shared
// by successive processes (Options.RegistryFile). Callers hold f.mu.
func (f *Fake) loadRegistry() (map[string]*Certificate, error) {
	if f.opts.RegistryFile == "" {
		return f.reg, nil
	}
	b, err := os.ReadFile(f.opts.RegistryFile)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]*Certificate{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("provisioningtest: read registry: %w", err)
	}
	reg := map[string]*Certificate{}
	if err := json.Unmarshal(b, &reg); err != nil {
		return nil, fmt.Errorf("provisioningtest: decode registry: %w", err)
	}
	return reg, nil
}

func (f *Fake) saveRegistry(reg map[string]*Certificate) error {
	if f.opts.RegistryFile == "" {
		f.reg = reg
		return nil
	}
	b, err := json.Marshal(reg)
	if err != nil {
		return fmt.Errorf("provisioningtest: encode registry: %w", err)
	}
	tmp := f.opts.RegistryFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("provisioningtest: write registry: %w", err)
	}
	if err := os.Rename(tmp, f.opts.RegistryFile); err != nil {
		return fmt.Errorf("provisioningtest: write registry: %w", err)
	}
	return nil
}

// update runs fn on the registry under f.mu and saves it when fn
// reports a change.
func (f *Fake) update(fn func(reg map[string]*Certificate) bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	reg, err := f.loadRegistry()
	if err != nil {
		return err
	}
	if fn(reg) {
		return f.saveRegistry(reg)
	}
	return nil
}

// Certificates returns the registry, oldest first.
func (f *Fake) Certificates() ([]Certificate, error) {
	var out []Certificate
	err := f.update(func(reg map[string]*Certificate) bool {
		for _, c := range reg {
			out = append(out, *c)
		}
		return false
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Minted.Before(out[j].Minted) })
	return out, err
}

// Count returns how many certificates have status (for thing, if not
// empty).
func (f *Fake) Count(status, thing string) (int, error) {
	certs, err := f.Certificates()
	n := 0
	for _, c := range certs {
		if c.Status == status && (thing == "" || c.Thing == thing) {
			n++
		}
	}
	return n, err
}

// connected records a connect of clientID and returns the session it
// takes over (AWS allows one connection per client ID; the second
// connect disconnects the first).
func (f *Fake) connected(c *conn) *conn {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if last, ok := f.lastConnect[c.clientID]; ok && now.Sub(last) < time.Second {
		f.rateViolations = append(f.rateViolations, fmt.Sprintf("%s connected %s after its previous connect", c.clientID, now.Sub(last).Round(time.Millisecond)))
	}
	f.lastConnect[c.clientID] = now
	prev := f.live[c.clientID]
	f.live[c.clientID] = c
	if prev != nil && prev.alive() == nil {
		f.kicked++
		return prev
	}
	return nil
}

func (f *Fake) closed(c *conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.live[c.clientID] == c {
		delete(f.live, c.clientID)
	}
}

// ConnectRateViolations lists connects of one client ID less than a
// second after the previous one (AWS allows 1 CONNECT/s per client ID).
func (f *Fake) ConnectRateViolations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.rateViolations...)
}

// Kicked reports how many sessions were disconnected because another
// connected with the same client ID.
func (f *Fake) Kicked() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.kicked
}
