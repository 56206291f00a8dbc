package wire

import (
	"encoding/hex"
	"testing"
)

// TestDocExample: the worked example of docs/wire.md.
func TestDocExample(t *testing.T) {
	e, err := NewEncoder(CompressNone)
	if err != nil {
		t.Fatal(err)
	}
	e.Reset("car")
	if err := e.Add(7, 1000, "event", []byte(`{"signal":"Vehicle.Speed","value":48.5}`)); err != nil {
		t.Fatal(err)
	}
	out, _ := e.Finish(nil)
	want := "5443420100" + "03636172" + "04" + "056576656e74" + "067369676e616c" + "0d" + hex.EncodeToString([]byte("Vehicle.Speed")) +
		"0576616c7565" + "01" + "0e" + "d00f" + "00" + "020602" + "040401ca07" + "00"
	if got := hex.EncodeToString(out); got != want {
		t.Errorf("example encodes to\n%s\nwant (docs/wire.md)\n%s", got, want)
	}
}
