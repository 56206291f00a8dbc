package candump

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
)

func TestPlaySendsWithTiming(t *testing.T) {
	t.Parallel()
	v := canbus.NewVirtual()
	tx, rx := v.Attach(), v.Attach()
	defer tx.Close()
	defer rx.Close()
	f, err := os.Open("testdata/drive.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	n, err := Play(context.Background(), f, tx, PlayOptions{Speed: 2, Interface: "vcan0"})
	if err != nil {
		t.Fatal(err)
	}
	// 7 vcan0 data frames (the RTR line is skipped) over 160 ms at 2x.
	if n != 7 {
		t.Errorf("Play() sent %d frames, want 7", n)
	}
	if took := time.Since(start); took < 75*time.Millisecond {
		t.Errorf("Play() at 2x took %v, want >= 80ms", took)
	}
	var ids []uint32
	for range n {
		fr, err := rx.Receive(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, fr.ID)
	}
	want := []uint32{0x0C0, 0x120, 0x0C0, 0x7FF, 0x0C0, 0x120, 0x3E1}
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Errorf("played ids (-want +got):\n%s", diff)
	}
}

func TestPlayStopsOnCancel(t *testing.T) {
	t.Parallel()
	v := canbus.NewVirtual()
	tx := v.Attach()
	defer tx.Close()
	f, err := os.Open("testdata/drive.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	n, err := Play(ctx, f, tx, PlayOptions{Speed: 0.01})
	if err != nil || n != 1 {
		t.Errorf("Play() at 0.01x cancelled after 30ms = %d, %v; want 1 frame, nil", n, err)
	}
}
