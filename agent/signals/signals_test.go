package signals

import (
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
)

func TestStore(t *testing.T) {
	t.Parallel()
	st := New()
	if _, ok := st.Latest("Vehicle.Speed"); ok {
		t.Fatal("Latest on empty store reported a value")
	}
	ch := st.Changed()
	select {
	case <-ch:
		t.Fatal("Changed closed before any Set")
	default:
	}
	now := time.Unix(1700000000, 0)
	st.Set(drivers.Sample{Name: "Vehicle.Speed", Value: 12.5, Time: now})
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatal("Changed not closed after Set")
	}
	got, ok := st.Latest("Vehicle.Speed")
	if !ok || got.Value != 12.5 || !got.Time.Equal(now) {
		t.Errorf("Latest = %+v, %v", got, ok)
	}
	st.Set(drivers.Sample{Name: "A", Value: 1})
	snap := st.Snapshot()
	if len(snap) != 2 || snap[0].Name != "A" {
		t.Errorf("Snapshot = %+v", snap)
	}
}
