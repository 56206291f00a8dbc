package canmap

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestSetOverrides: a profile lengthens the heartbeat and widens the
// deadband of matching signals at run time; nil restores the configured
// policy.
func TestSetOverrides(t *testing.T) {
	t.Parallel()
	d, err := New(Options{DB: loadDB(t), Source: "src", Signals: []Signal{
		{Name: "Vehicle.Speed", Source: "M1.Speed", Heartbeat: Duration(100 * time.Millisecond)},
		{Name: "Other.Temp", Source: "M1.Temp", Heartbeat: Duration(100 * time.Millisecond)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var r rec
	feed := func(from, to int, speed uint16) {
		for ms := from; ms < to; ms += 100 {
			f := m1(speed, 0, 20, ms)
			d.Decode(&f, &r)
		}
	}
	count := func(name string) int {
		n := 0
		for _, s := range r {
			if s.Name == name {
				n++
			}
		}
		return n
	}
	feed(0, 1000, 100) // heartbeats every frame: 10 each
	if count("Vehicle.Speed") != 10 || count("Other.Temp") != 10 {
		t.Fatalf("configured policy: speed %d temp %d samples, want 10 each", count("Vehicle.Speed"), count("Other.Temp"))
	}
	hb, db := time.Second, 5.0
	d.SetOverrides([]Override{{Match: "Vehicle.*", Heartbeat: &hb, Deadband: &db}})
	r = nil
	feed(1000, 3000, 100) // unchanged for 2 s: one heartbeat per second for speed
	feed(3000, 3100, 130) // +3 km/h: inside the 5 km/h deadband
	feed(3100, 3200, 200) // +10 km/h: reported
	got := []int{}
	for _, s := range r {
		if s.Name == "Vehicle.Speed" {
			got = append(got, int(s.Time.Sub(t0)/time.Millisecond))
		}
	}
	if diff := cmp.Diff([]int{1900, 2900, 3100}, got); diff != "" {
		t.Errorf("overridden speed reports (-want +got):\n%s", diff)
	}
	if count("Other.Temp") != 22 {
		t.Errorf("non-matching signal: %d samples, want 22 (its own heartbeat)", count("Other.Temp"))
	}
	// Keep pins a signal to its configured policy.
	d.SetOverrides([]Override{{Match: "*", Heartbeat: &hb}, {Match: "Other.Temp", Keep: true}})
	r = nil
	feed(3200, 3500, 200)
	if count("Other.Temp") != 3 || count("Vehicle.Speed") != 0 {
		t.Errorf("kept temp %d samples (want 3), speed %d (want 0)", count("Other.Temp"), count("Vehicle.Speed"))
	}
	d.SetOverrides(nil)
	r = nil
	feed(3500, 3800, 200)
	if count("Vehicle.Speed") != 3 {
		t.Errorf("restored policy: %d speed samples, want 3", count("Vehicle.Speed"))
	}
}
