package agent

import (
	"testing"

	"github.com/tcu-agent/tcu-agent/agent/profile"
	"github.com/tcu-agent/tcu-agent/agent/uplink"
)

// TestUplinkClasses: a profile that publishes only critical records lets
// the uplink lease critical records and nothing else, in the uplink's own
// class numbering (which differs from the buffer's).
func TestUplinkClasses(t *testing.T) {
	t.Parallel()
	if uplinkClasses(nil) != nil {
		t.Fatal("nil filter: want nil (every class)")
	}
	for _, tc := range []struct {
		publish []string
		want    map[uplink.Class]bool
	}{
		{[]string{"critical"}, map[uplink.Class]bool{uplink.ClassCritical: true, uplink.ClassEvent: false, uplink.ClassTelemetry: false}},
		{[]string{"critical", "event"}, map[uplink.Class]bool{uplink.ClassCritical: true, uplink.ClassEvent: true, uplink.ClassTelemetry: false}},
		{[]string{"telemetry"}, map[uplink.Class]bool{uplink.ClassCritical: false, uplink.ClassEvent: false, uplink.ClassTelemetry: true}},
	} {
		f := uplinkClasses(profile.PublishFunc(tc.publish))
		for c, want := range tc.want {
			if got := f(uint8(c)); got != want {
				t.Errorf("publish %v: uplink class %d allowed = %v, want %v", tc.publish, c, got, want)
			}
		}
	}
}
