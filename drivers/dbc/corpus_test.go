package dbc

import (
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"go.einride.tech/can"
)

// corpusDir is the opendbc corpus (testdata/dbc/README.md), relative to
// this package.
const corpusDir = "../../testdata/dbc/corpus"

// TestLoadOpendbcCorpus loads every real file of the shared opendbc corpus,
// lists per file what was skipped, requires ≥ 98 % to be usable and
// cross-checks the bit layout of every classic-frame signal.
func TestLoadOpendbcCorpus(t *testing.T) {
	var files []string
	err := filepath.WalkDir(corpusDir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".dbc") {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatalf("walk %s: %v", corpusDir, err)
	}
	usable := 0
	rng := rand.New(rand.NewPCG(7, 8))
	for _, f := range files {
		db, warns, err := Load(f)
		rel, _ := filepath.Rel(corpusDir, f)
		if err != nil {
			t.Logf("UNUSABLE %s: %v (%d warnings)", rel, err, len(warns))
		} else {
			usable++
			nsig := 0
			for _, m := range db.Messages {
				nsig += len(m.Signals)
			}
			t.Logf("ok %s: %d messages, %d signals, %d skipped constructs", rel, len(db.Messages), nsig, len(warns))
			crossCheckDB(t, db, rng)
		}
		for _, w := range warns {
			t.Logf("    %s", w)
		}
	}
	if len(files) == 0 {
		t.Fatalf("no .dbc files under %s", corpusDir)
	}
	pct := 100 * float64(usable) / float64(len(files))
	t.Logf("%d/%d files usable (%.1f %%)", usable, len(files), pct)
	if pct < 98 {
		t.Errorf("%d/%d files usable (%.1f %%), want ≥ 98 %%", usable, len(files), pct)
	}
}

// crossCheckDB compares every signal of the database's 8-byte messages with
// go.einride.tech/can's bit operations on one random payload.
func crossCheckDB(t *testing.T, db *Database, rng *rand.Rand) {
	t.Helper()
	for _, m := range db.Messages {
		if m.Length != 8 {
			continue
		}
		var d can.Data
		for i := range d {
			d[i] = byte(rng.Uint32())
		}
		for i := range m.plan.sigs {
			crossCheck(t, m, &m.plan.sigs[i], d, rng)
		}
	}
}
