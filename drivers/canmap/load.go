package canmap

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/tcu-agent/tcu-agent/drivers/dbc"
)

// Load loads the DBC file at path (relative paths are resolved against
// configDir) and builds a Decoder for opts (opts.DB is set from the file).
// It logs one line when the file had skipped constructs, and each of them
// at debug level. It is the CAN drivers' Init-time I/O.
func Load(log *slog.Logger, configDir, path string, opts Options) (*dbc.Database, *Decoder, error) {
	if path == "" {
		return nil, nil, errors.New("dbc is not set")
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(configDir, path)
	}
	db, warns, err := dbc.Load(path)
	if err != nil {
		return nil, nil, err
	}
	if len(warns) > 0 && log != nil {
		for _, w := range warns {
			log.Debug("dbc construct skipped", "file", w.File, "line", w.Line, "reason", w.Msg)
		}
		log.Info("dbc loaded with skipped constructs", "file", path, "skipped", len(warns), "first", warns[0].String())
	}
	opts.DB = db
	dec, err := New(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("dbc %s: %w", path, err)
	}
	return db, dec, nil
}
