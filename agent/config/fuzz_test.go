package config

import (
	"errors"
	"os"
	"testing"
)

// FuzzParse feeds arbitrary files to the loader: it must never panic, and
// every rejection must be a *Error naming the file (so check-config can
// always say where).
func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	if b, err := os.ReadFile("../../configs/demo.toml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("version = 1\n[[driver]]\nname = \"x\"\nkind = \"fake\"\nport = 1\n"))
	f.Add([]byte("version = 1\n[buffer]\nmax_bytes = \"1KiB\"\n[agent]\nlog_level = 7\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.toml", data, Extensions{"mqtt": &extSection{}})
		if err == nil {
			if cfg.Version != CurrentVersion {
				t.Fatalf("accepted version %d", cfg.Version)
			}
			return
		}
		var ce *Error
		if !errors.As(err, &ce) || ce.File != "fuzz.toml" {
			t.Fatalf("error %v (%T) is not a *config.Error naming the file", err, err)
		}
	})
}
