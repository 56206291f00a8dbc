package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/candump"
	"github.com/tcu-agent/tcu-agent/drivers/dbc"
)

func TestMain(m *testing.M) {
	// The ingest benchmark re-executes this binary as tcu-sim.
	if args, ok := os.LookupEnv(asSimEnv); ok {
		os.Exit(runAsSim(args))
	}
	goleak.VerifyTestMain(m)
}

func TestEmbeddedDBCMatchesConfigs(t *testing.T) {
	t.Parallel()
	want, err := os.ReadFile("../../configs/vehicle.dbc")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, embeddedDBC) {
		t.Error("cmd/tcu-sim/vehicle.dbc differs from configs/vehicle.dbc; copy it over")
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSimServesBusAnswersAndRecords(t *testing.T) {
	dir := t.TempDir()
	sock, rec := filepath.Join(dir, "sub", "vbus.sock"), filepath.Join(dir, "drive.log")
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"--vbus", sock, "--scenario", "city", "--body-delay", "50ms",
			"--record", rec, "--load", "5", "--bitrate", "500000"}, &logs)
	}()

	var bus *canbus.Conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if bus, err = canbus.Dial(ctx, sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tcu-sim never served %s: %v\nlogs:\n%s", sock, err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer bus.Close()
	db, _, err := dbc.Load("../../configs/vehicle.dbc")
	if err != nil {
		t.Fatal(err)
	}
	cmd, _ := db.Message("BODY_COMMAND")
	data, err := cmd.Encode(map[string]float64{"LockRequest": 1, "CommandCounter": 1})
	if err != nil {
		t.Fatal(err)
	}
	f := canbus.Frame{ID: cmd.ID}
	f.Len = uint8(copy(f.Data[:], data))
	if err := bus.Send(ctx, f); err != nil {
		t.Fatal(err)
	}
	// Its own budget: under emulation (make vmtest, arm64) start-up alone
	// can take most of the first one.
	deadline = time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "lock state changed") {
		if time.Now().After(deadline) {
			t.Fatalf("no lock state change logged:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Let the recorder see some traffic, and the load filler add its
	// identifiers (slow under emulation, make vmtest).
	time.Sleep(1500 * time.Millisecond)
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("run() = %d after cancel, want 0\nlogs:\n%s", c, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tcu-sim did not stop within 10s of cancel")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket %s left behind (stat: %v)", sock, err)
	}
	checkRecording(t, rec)
	if n := strings.Count(logs.String(), "\n"); n > 10 {
		t.Errorf("tcu-sim logged %d lines; want a handful (nothing per frame):\n%s", n, logs.String())
	}
}

func checkRecording(t *testing.T, path string) {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	r := candump.NewReader(fh)
	ids := map[uint32]int{}
	for {
		var rec candump.Record
		if err := r.Next(&rec); err != nil {
			break
		}
		ids[rec.Frame.ID]++
	}
	if ids[0x0C0] == 0 || ids[0x121] == 0 || ids[0x120] == 0 {
		t.Errorf("recording lacks POWERTRAIN, BODY_COMMAND or BODY_STATUS frames: %v", ids)
	}
	if len(ids) < 8 {
		t.Errorf("recording has %d identifiers; the load filler should add more", len(ids))
	}
	if r.Skipped() != 0 {
		t.Errorf("recording has %d unreadable lines: %v", r.Skipped(), r.FirstSkip())
	}
}

func TestRefusesBusySocketAndBadFlags(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "vbus.sock")
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	var logs syncBuffer
	go func() { code <- run(ctx, []string{"--vbus", sock}, &logs) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "tcu-sim started") {
		if time.Now().After(deadline) {
			t.Fatalf("first tcu-sim did not start:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	var second syncBuffer
	if c := run(context.Background(), []string{"--vbus", sock}, &second); c != 1 || !strings.Contains(second.String(), "another tcu-sim") {
		t.Errorf("second tcu-sim on a busy socket = %d, logs:\n%s", c, second.String())
	}
	cancel()
	if c := <-code; c != 0 {
		t.Errorf("first tcu-sim exit = %d", c)
	}
	for _, args := range [][]string{{"--load", "101"}, {"--scenario", "rally", "--vbus", sock}, {"extra"}, {"--body-delay", "-1s"}, {"--hold", "flying"}, {"--mute", "NOPE", "--vbus", sock}, {"--replay", "x", "--nmea-pty"}, {"--replay-speed", "-1"},
		{"--replay", filepath.Join(t.TempDir(), "missing.log"), "--vbus", sock}, {"--speed", "400"}} {
		var out syncBuffer
		if c := run(context.Background(), args, &out); c == 0 {
			t.Errorf("run(%q) = 0, want failure", args)
		}
	}
}
