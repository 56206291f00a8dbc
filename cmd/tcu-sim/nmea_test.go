package main

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/gnss"
)

// TestNMEAPTYFollowsTheVehicle reads the GNSS pseudo-terminal of a vehicle
// held at 72 km/h and decodes it as the gnss driver would.
func TestNMEAPTYFollowsTheVehicle(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "gnss")
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"--vbus", filepath.Join(dir, "vbus.sock"), "--nmea-pty", "--nmea-link", link,
			"--hold", "moving", "--speed", "72"}, &logs)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "tcu-sim started") {
		if time.Now().After(deadline) {
			t.Fatalf("tcu-sim did not start:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	tty, err := os.OpenFile(link, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var fixes []gnss.Fix
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _, _ = gnss.DecodeAll(tty, func(f gnss.Fix) {
			mu.Lock()
			fixes = append(fixes, f)
			mu.Unlock()
		})
	}()
	time.Sleep(3500 * time.Millisecond)
	tty.Close()
	cancel()
	<-done
	if c := <-code; c != 0 {
		t.Errorf("run() = %d\n%s", c, logs.String())
	}
	if _, err := os.Lstat(link); !os.IsNotExist(err) {
		t.Errorf("symlink %s left behind", link)
	}
	mu.Lock()
	defer mu.Unlock()
	moving := 0
	for _, f := range fixes {
		if f.HasPos && f.HasSpeed && math.Abs(f.Speed-20) < 0.1 {
			moving++
		}
	}
	if moving < 2 {
		t.Errorf("got %d fixes at 20 m/s in 3.5 s (of %d fixes: %+v), want >= 2", moving, len(fixes), fixes)
	}
}
