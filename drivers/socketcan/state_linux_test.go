//go:build linux

package socketcan

import (
	"log/slog"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
)

// TestErrorFramesDriveStateAndCallback feeds a controller's error frames
// through the same path Receive uses and checks State, Stats and OnState.
func TestErrorFramesDriveStateAndCallback(t *testing.T) {
	t.Parallel()
	type change struct{ From, To State }
	var got []change
	c := &Conn{iface: "can0", log: slog.New(slog.DiscardHandler), opts: Options{
		OnState: func(iface string, from, to State) {
			if iface != "can0" {
				t.Errorf("OnState iface = %q", iface)
			}
			got = append(got, change{from, to})
		},
	}}
	frames := [][]byte{
		rawFrame(flagERR|0x04, 0, 0x08),                           // tx warning
		rawFrame(flagERR|0x04|0x200, 0, 0x20, 0, 0, 0, 0, 140, 3), // tx passive, counters
		rawFrame(flagERR|0x08, 0, 0, 0x02),                        // protocol error: no change
		rawFrame(flagERR | 0x40),                                  // bus-off
		rawFrame(flagERR | 0x100),                                 // restarted
	}
	for _, b := range frames {
		var f canbus.Frame
		var ef errorFrame
		if isErr, err := decodeFrame(b, &f, &ef); err != nil || !isErr {
			t.Fatalf("decodeFrame() = %v, %v", isErr, err)
		}
		c.errorFrame(&ef)
	}
	want := []change{{StateActive, StateWarning}, {StateWarning, StatePassive}, {StatePassive, StateBusOff}, {StateBusOff, StateActive}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("state changes mismatch (-want +got):\n%s", diff)
	}
	s := c.Stats()
	if s.ErrorFrames != 5 || s.BusOffs != 1 || s.State != StateActive || s.TxErrors != 140 || s.RxErrors != 3 {
		t.Errorf("Stats() = %+v", s)
	}
}
