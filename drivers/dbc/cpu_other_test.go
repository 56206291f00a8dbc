//go:build !linux

package dbc

import "time"

// threadCPU is not available here; benchmarks then report 0 CPU-ns/op.
func threadCPU() time.Duration { return 0 }
