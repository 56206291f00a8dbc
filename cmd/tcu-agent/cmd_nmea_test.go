package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"
)

func TestNMEAVerb(t *testing.T) {
	t.Parallel()
	capture := filepath.Join("..", "..", "drivers", "gnss", "testdata", "gpsd", "neo-m8n.log")
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"nmea", capture}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 24 {
		t.Fatalf("got %d lines, want 24 fixes:\n%s", len(lines), stdout.String())
	}
	var fixes []map[string]any
	for _, l := range lines {
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(l))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("line %q is not JSON: %v", l, err)
		}
		fixes = append(fixes, m)
	}
	// The first epoch is a lone GLL before any date: position, no time.
	if _, ok := fixes[0]["time"]; ok {
		t.Errorf("first fix has a time: %v", fixes[0])
	}
	// The second is the 17:19:26 epoch gpsd reports as
	// lat 44.069010500 lon -121.314246333 alt 1147.2 speed 0.060 mode 3.
	f := fixes[1]
	if f["time"] != "2015-03-18T17:19:26Z" || f["mode"] != json.Number("3") {
		t.Errorf("second fix = %v", f)
	}
	num := func(k string) float64 {
		v, err := f[k].(json.Number).Float64()
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		return v
	}
	for _, c := range []struct {
		key       string
		want, tol float64
	}{
		{"lat", 44.0690105, 1e-6}, {"lon", -121.314246333, 1e-6}, {"alt", 1147.2, 0.1}, {"speed", 0.060, 0.01},
	} {
		if got := num(c.key); math.Abs(got-c.want) > c.tol {
			t.Errorf("%s = %v, want %v", c.key, got, c.want)
		}
	}
	if !strings.Contains(stderr.String(), "24 fixes") {
		t.Errorf("stderr summary = %q", stderr.String())
	}
}

func TestNMEAVerbErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"no file", []string{"nmea"}, 2},
		{"missing file", []string{"nmea", filepath.Join(t.TempDir(), "nope.log")}, 1},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), tt.args, &stdout, &stderr); code != tt.code {
			t.Errorf("%s: exit %d, want %d (stderr %q)", tt.name, code, tt.code, stderr.String())
		}
		if stdout.Len() != 0 {
			t.Errorf("%s: stdout = %q, want nothing", tt.name, stdout.String())
		}
	}
}
