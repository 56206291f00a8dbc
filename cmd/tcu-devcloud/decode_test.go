package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// TestDecodeVerb: `decode FILE` and `decode -` print the golden compact
// batch as its golden JSON envelope; garbage is an error (exit 1).
func TestDecodeVerb(t *testing.T) {
	const dir = "../../agent/record/wire/testdata/"
	want, err := os.ReadFile(dir + "records.envelope.json")
	if err != nil {
		t.Fatal(err)
	}
	payload, err := os.ReadFile(dir + "records.zstd.tcb")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		args  []string
		stdin []byte
	}{
		{"file", []string{"decode", dir + "records.zstd.tcb"}, nil},
		{"stdin", []string{"decode", "-"}, payload},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(context.Background(), tt.args, bytes.NewReader(tt.stdin), &out, &errOut); code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("printed\n%s\nwant\n%s", out.Bytes(), want)
			}
		})
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"decode", "-"}, strings.NewReader("TCB\x01\x01garbage"), &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "malformed") {
		t.Errorf("garbage: exit %d, stderr %q", code, errOut.String())
	}
}
