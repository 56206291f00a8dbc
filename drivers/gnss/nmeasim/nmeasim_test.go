package nmeasim_test

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/gnss"
	"github.com/tcu-agent/tcu-agent/drivers/gnss/nmeasim"
)

func TestGeneratorDecodes(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 3, 1, 23, 59, 58, 0, time.UTC)
	g := nmeasim.Generator{Talker: "GN", V: nmeasim.Vehicle{
		Time: start, Lat: -33.8688, Lon: 151.2093, Alt: 58.2, Speed: 13.9, Course: 45, TurnRate: 3, Sats: 9, HDOP: 0.8,
	}}
	var text strings.Builder
	var want []nmeasim.Vehicle
	for range 5 {
		want = append(want, g.V)
		for _, s := range g.Epoch() {
			text.WriteString(s)
		}
		g.Step(time.Second)
	}
	var got []gnss.Fix
	if _, _, err := gnss.DecodeAll(strings.NewReader(text.String()), func(f gnss.Fix) { got = append(got, f) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("decoded %d fixes, want %d", len(got), len(want))
	}
	for i, f := range got {
		w := want[i]
		if f.Mode != gnss.Mode3D || !f.TimeValid || !f.Time.Equal(w.Time) {
			t.Errorf("fix %d: mode %d time %v valid %v, want 3D %v", i, f.Mode, f.Time, f.TimeValid, w.Time)
		}
		if math.Abs(f.Lat-w.Lat) > 1e-6 || math.Abs(f.Lon-w.Lon) > 1e-6 || math.Abs(f.Alt-w.Alt) > 0.1 {
			t.Errorf("fix %d: %v,%v,%v, want %v,%v,%v", i, f.Lat, f.Lon, f.Alt, w.Lat, w.Lon, w.Alt)
		}
		if math.Abs(f.Speed-w.Speed) > 0.01 || math.Abs(f.Course-w.Course) > 0.01 || f.Sats != 9 {
			t.Errorf("fix %d: speed %v course %v sats %d", i, f.Speed, f.Course, f.Sats)
		}
	}
	// 13.9 m/s for 4 s moves about 55.6 m.
	moved := math.Hypot((want[4].Lat-want[0].Lat)*111195, (want[4].Lon-want[0].Lon)*111195*math.Cos(want[0].Lat*math.Pi/180))
	if moved < 50 || moved > 60 {
		t.Errorf("vehicle moved %.1f m in 4 s at 13.9 m/s", moved)
	}
}

func TestNoFix(t *testing.T) {
	t.Parallel()
	g := nmeasim.Generator{V: nmeasim.Vehicle{Time: time.Unix(0, 0), NoFix: true}}
	var fixes []gnss.Fix
	if _, _, err := gnss.DecodeAll(strings.NewReader(strings.Join(g.Epoch(), "")), func(f gnss.Fix) { fixes = append(fixes, f) }); err != nil {
		t.Fatal(err)
	}
	if len(fixes) != 1 || fixes[0].Mode != gnss.ModeNoFix || fixes[0].HasPos {
		t.Fatalf("fixes = %+v, want one no-fix", fixes)
	}
}

// epochCounter cancels its context once it has seen n RMC sentences.
type epochCounter struct {
	n      int
	cancel context.CancelFunc
}

func (w *epochCounter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), "RMC,") {
		if w.n--; w.n == 0 {
			w.cancel()
		}
	}
	return len(p), nil
}

func TestRunWritesEpochs(t *testing.T) {
	t.Parallel()
	g := nmeasim.Generator{V: nmeasim.Vehicle{Time: time.Unix(1700000000, 0), Lat: 1, Lon: 1, Sats: 5, HDOP: 1}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := &epochCounter{n: 3, cancel: cancel}
	if err := g.Run(ctx, w, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if w.n > 0 {
		t.Fatalf("Run returned after %d epochs, want 3", 3-w.n)
	}
	// The vehicle's clock advanced one interval per epoch.
	if got := g.V.Time.Sub(time.Unix(1700000000, 0)); got != 30*time.Millisecond {
		t.Errorf("vehicle time advanced %v, want 30ms", got)
	}
}

func TestOpenPTY(t *testing.T) {
	t.Parallel()
	master, slave, err := nmeasim.OpenPTY()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer master.Close()
	if !strings.HasPrefix(slave, "/dev/pts/") {
		t.Errorf("slave = %q", slave)
	}
}
