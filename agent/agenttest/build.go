package agenttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// agentPackage is the import path of the binary under test.
const agentPackage = "github.com/tcu-agent/tcu-agent/cmd/tcu-agent"

// ModuleRoot returns the directory holding the module's go.mod, searching
// upwards from the working directory (a test's package directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find module root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Build compiles cmd/tcu-agent as a static binary (CGO_ENABLED=0, as
// shipped) into dir and returns its path. It needs the go command on PATH.
func Build(ctx context.Context, dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build tcu-agent: %w", err)
	}
	out := filepath.Join(dir, "tcu-agent")
	cmd := exec.CommandContext(ctx, goTool, "build", "-ldflags=-s -w", "-o", out, agentPackage)
	cmd.Dir = root
	// As shipped: static, and without flags meant for the tests (GOFLAGS=-race
	// cannot build without cgo).
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build tcu-agent: %w\n%s", err, stderr.Bytes())
	}
	return out, nil
}
