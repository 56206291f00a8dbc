//go:build vcan && linux

// Real-kernel test: it needs vcan0 up, as in the qemu guest that
// scripts/vmtest.sh boots (docs/vmtest.md).

package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
	"github.com/tcu-agent/tcu-agent/drivers/socketcan"
)

// TestVcanSimAnswersAndRecords runs tcu-sim on vcan0 and plays the TCU on
// another socket: a lock request is answered and everything is recorded.
func TestVcanSimAnswersAndRecords(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "vcan.log")
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"--socketcan", "vcan0", "--body-delay", "50ms", "--record", rec, "--load", "5"}, &logs)
	}()
	tcu, err := socketcan.Open("vcan0", socketcan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tcu.Close()
	db, _, err := dbc.Parse("vehicle.dbc", embeddedDBC)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "tcu-sim started") {
		if time.Now().After(deadline) {
			t.Fatalf("tcu-sim did not start:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd, _ := db.Message("BODY_COMMAND")
	data, err := cmd.Encode(map[string]float64{"LockRequest": 1, "CommandCounter": 9})
	if err != nil {
		t.Fatal(err)
	}
	f := canbus.Frame{ID: cmd.ID}
	f.Len = uint8(copy(f.Data[:], data))
	if err := tcu.Send(ctx, f); err != nil {
		t.Fatal(err)
	}
	status, _ := db.Message("BODY_STATUS")
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	for locked := false; !locked; {
		fr, err := tcu.Receive(rctx)
		if err != nil {
			t.Fatalf("no LOCKED status on vcan0: %v\n%s", err, logs.String())
		}
		if fr.ID != status.ID {
			continue
		}
		vals, _ := status.Decode(fr.Payload())
		for _, v := range vals {
			locked = locked || v.Signal.Name == "DoorLockState" && v.Label == "LOCKED"
		}
	}
	time.Sleep(time.Second) // let the recorder see the filler traffic
	cancel()
	if c := <-code; c != 0 {
		t.Errorf("run() = %d\n%s", c, logs.String())
	}
	checkRecording(t, rec)
}
