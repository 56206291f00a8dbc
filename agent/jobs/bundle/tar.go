package bundle

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/tcu-agent/tcu-agent/internal/fsutil"
)

// ConfigName is the bundle's required configuration file.
const ConfigName = "tcu-agent.toml"

// MaxEntries bounds a bundle's tar entries.
const MaxEntries = 64

// Entry is one file or directory of a bundle.
type Entry struct {
	Name string // cleaned, slash-separated, relative
	Dir  bool
	Data []byte
}

// Parse reads a bundle tar (POSIX ustar/pax, uncompressed) and checks it:
// relative paths without "..", regular files and directories only, at most
// MaxEntries entries, file bytes at most maxTotal, no name twice, and a
// tcu-agent.toml at the top. The error is an *Error (invalid_config, or
// too_large).
func Parse(data []byte, maxTotal int64) ([]Entry, error) {
	tr := tar.NewReader(bytes.NewReader(data))
	var out []Entry
	seen := map[string]bool{}
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, Fail(ReasonInvalidConfig, "bundle is not a valid tar: %v", err)
		}
		if len(out) >= MaxEntries {
			return nil, Fail(ReasonInvalidConfig, "bundle has more than %d entries", MaxEntries)
		}
		name, err := cleanName(h.Name)
		if err != nil {
			return nil, Fail(ReasonInvalidConfig, "bundle entry %q: %v", h.Name, err)
		}
		if seen[name] {
			return nil, Fail(ReasonInvalidConfig, "bundle entry %q appears twice", name)
		}
		seen[name] = true
		switch h.Typeflag {
		case tar.TypeDir:
			out = append(out, Entry{Name: name, Dir: true})
		case tar.TypeReg:
			if h.Size < 0 || total+h.Size > maxTotal {
				return nil, Fail(ReasonTooLarge, "bundle files exceed %d bytes", maxTotal)
			}
			b, err := io.ReadAll(io.LimitReader(tr, h.Size))
			if err != nil || int64(len(b)) != h.Size {
				return nil, Fail(ReasonInvalidConfig, "bundle entry %q is truncated", name)
			}
			total += h.Size
			out = append(out, Entry{Name: name, Data: b})
		default:
			return nil, Fail(ReasonInvalidConfig, "bundle entry %q is not a regular file or directory (type %q)", name, h.Typeflag)
		}
	}
	// A file may not sit where another entry needs a directory.
	for _, e := range out {
		for p := path.Dir(e.Name); p != "."; p = path.Dir(p) {
			if seen[p] && !isDir(out, p) {
				return nil, Fail(ReasonInvalidConfig, "bundle entry %q is under the file %q", e.Name, p)
			}
		}
	}
	for _, e := range out {
		if e.Name == ConfigName && !e.Dir {
			return out, nil
		}
	}
	return nil, Fail(ReasonInvalidConfig, "bundle has no %s", ConfigName)
}

func isDir(es []Entry, name string) bool {
	for _, e := range es {
		if e.Name == name {
			return e.Dir
		}
	}
	return false
}

// cleanName checks a tar entry name and returns it cleaned.
func cleanName(n string) (string, error) {
	if n == "" || strings.ContainsAny(n, "\\\x00") {
		return "", errors.New("empty name, backslash or NUL")
	}
	if path.IsAbs(n) {
		return "", errors.New("absolute path")
	}
	for _, part := range strings.Split(strings.TrimSuffix(n, "/"), "/") {
		if part == ".." {
			return "", errors.New("path with a .. element")
		}
	}
	c := path.Clean(n)
	if c == "." || strings.HasPrefix(c, "../") || c == ".." {
		return "", errors.New("path outside the bundle")
	}
	return c, nil
}

// Write creates entries under dir (which must not exist yet), fsyncing
// every file and directory, so that a crash leaves either no dir or one
// whose files are complete once the caller's rename made it visible.
func Write(dir string, entries []Entry) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("create bundle dir: %w", err)
	}
	dirs := map[string]bool{dir: true}
	for _, e := range entries {
		p := filepath.Join(dir, filepath.FromSlash(e.Name))
		if rel, err := filepath.Rel(dir, p); err != nil || strings.HasPrefix(rel, "..") {
			return fmt.Errorf("bundle entry %q escapes %s", e.Name, dir)
		}
		if e.Dir {
			if err := os.MkdirAll(p, 0o700); err != nil {
				return fmt.Errorf("create bundle dir: %w", err)
			}
			dirs[p] = true
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return fmt.Errorf("create bundle dir: %w", err)
		}
		dirs[filepath.Dir(p)] = true
		if err := writeFileSync(p, e.Data); err != nil {
			return err
		}
	}
	for d := range dirs {
		if err := fsutil.SyncDir(d); err != nil {
			return fmt.Errorf("sync bundle dir: %w", err)
		}
	}
	return nil
}

func writeFileSync(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write bundle file: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write bundle file %s: %w", p, err)
	}
	return nil
}

// Build returns a bundle tar of files (name → content), for tools and
// tests. Names are written in the order given by names.
func Build(names []string, files map[string][]byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		b := files[n]
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
