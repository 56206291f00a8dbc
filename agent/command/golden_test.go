package command_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/tcu-agent/tcu-agent/agent/command"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// TestWireGolden pins the response wire formats (project and AWS IoT
// Commands) and the signing form: a change shows up in the diff of
// testdata/golden. Regenerate with: go test ./agent/command -run Golden -update
func TestWireGolden(t *testing.T) {
	t.Parallel()
	resp := command.Response{
		ID: "c-1", Device: "TCU-00042", Status: command.StatusTimedOut, ReasonCode: command.ReasonNoConfirmation,
		Reason: "Vehicle.Cabin.Door.Row1.DriverSide.IsLocked did not reach 1 within 3s (observed 0 at …)\nsecond line",
		TS:     1790000003000, State: map[string]float64{"Vehicle.Cabin.Door.Row1.DriverSide.IsLocked": 0, "Vehicle.Speed": 0.5},
	}
	project := resp
	project.Topic = "cmd/tcu/TCU-00042/response/c-1"
	aws := resp
	aws.Topic = "$aws/commands/things/TCU-00042/executions/c-1/response/json"
	req := command.Request{ID: "c-1", Device: "TCU-00042", Name: "door.lock", Params: json.RawMessage(`{}`),
		IssuedAt: 1790000000000, ValidMS: 30000}
	tests := []struct {
		file string
		got  func() ([]byte, error)
	}{
		{"response.json", project.Payload},
		{"response_aws.json", aws.Payload},
		{"signing.txt", func() ([]byte, error) { return command.SigningBytes(req), nil }},
	}
	for _, tt := range tests {
		got, err := tt.got()
		if err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		path := filepath.Join("testdata", "golden", tt.file)
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s changed:\n got %s\nwant %s", tt.file, got, want)
		}
	}
}
