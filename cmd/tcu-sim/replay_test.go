package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
)

// TestReplayPutsALogOnTheBus replays a candump log in a loop instead of the
// vehicle model; a client sees its frames (and no vehicle frames such as
// CLIMATE).
func TestReplayPutsALogOnTheBus(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "vbus.sock")
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"--vbus", sock, "--replay", "../../drivers/candump/testdata/drive.log",
			"--replay-speed", "4", "--replay-loop"}, &logs)
	}()
	var bus *canbus.Conn
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if bus, err = canbus.Dial(ctx, sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no bus: %v\n%s", err, logs.String())
		}
	}
	defer bus.Close()
	ids := map[uint32]int{}
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	for ids[0x3E1] < 2 { // the log's last frame, twice: it loops
		f, err := bus.Receive(rctx)
		if err != nil {
			t.Fatalf("replay frames seen %v: %v\n%s", ids, err, logs.String())
		}
		ids[f.ID]++
	}
	if ids[0x18FF1021] != 0 {
		t.Errorf("vehicle model frames on the bus during a replay: %v", ids)
	}
	cancel()
	if c := <-code; c != 0 {
		t.Errorf("run() = %d\n%s", c, logs.String())
	}
	if !strings.Contains(logs.String(), "replay=") {
		t.Errorf("start line does not name the replay:\n%s", logs.String())
	}
}
