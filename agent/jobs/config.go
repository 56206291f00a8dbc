package jobs

import (
	"errors"
	"fmt"
	"time"

	"github.com/tcu-agent/tcu-agent/internal/units"
)

// Config is the [jobs] section (remote configuration over AWS IoT Jobs).
type Config struct {
	// Enabled turns the jobs client on or off. Unset: on when PublicKeys
	// is set. On without keys, every configuration job is REJECTED.
	Enabled *bool `toml:"enabled"`
	// PublicKeys verify bundle signatures: the format and loader of
	// [commands] public_keys (base64 of 32 raw bytes, or a file path).
	PublicKeys []string `toml:"public_keys"`
	// CAFile is an extra PEM CA for the bundle file server (the system
	// roots are always trusted).
	CAFile string `toml:"ca_file"`
	// ProvingTime is how long a new configuration must stay healthy before
	// it becomes the last-known-good.
	ProvingTime units.Duration `toml:"proving_time"`
	// MaxBundleSize caps a bundle (download and unpacked files).
	MaxBundleSize units.Size `toml:"max_bundle_size"`
	// DownloadTimeout bounds a bundle download, retries included.
	DownloadTimeout units.Duration `toml:"download_timeout"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		ProvingTime:     units.Duration(2 * time.Minute),
		MaxBundleSize:   16 << 20,
		DownloadTimeout: units.Duration(5 * time.Minute),
	}
}

// On reports whether the jobs client runs.
func (c Config) On() bool {
	if c.Enabled != nil {
		return *c.Enabled
	}
	return len(c.PublicKeys) > 0
}

// Validate checks the values.
func (c Config) Validate() error {
	var errs []error
	if p := c.ProvingTime.Std(); p < time.Second || p > 24*time.Hour {
		errs = append(errs, fmt.Errorf("jobs.proving_time: %s not within 1s-24h", p))
	}
	if c.MaxBundleSize < 1<<10 || c.MaxBundleSize > 256<<20 {
		errs = append(errs, fmt.Errorf("jobs.max_bundle_size: %d not within 1KiB-256MiB", c.MaxBundleSize))
	}
	if d := c.DownloadTimeout.Std(); d < time.Second || d > 24*time.Hour {
		errs = append(errs, fmt.Errorf("jobs.download_timeout: %s not within 1s-24h", d))
	}
	return errors.Join(errs...)
}
