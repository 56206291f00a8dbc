package main

import (
	"strings"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/ctl"
)

func TestIdentityLineShowsVIN(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, id := range []ctl.Identity{
		{Source: "provisioning", VIN: "1G1JC5444R7252367"},
		{Thing: "SN-1", Source: "fleet", VIN: "1G1JC5444R7252367"},
	} {
		if got := identityLine(id, now); !strings.Contains(got, "VIN 1G1JC5444R7252367") {
			t.Errorf("identityLine(%+v) = %q, want the VIN", id, got)
		}
	}
	if got := identityLine(ctl.Identity{Thing: "SN-1", Source: "fleet"}, now); strings.Contains(got, "VIN") {
		t.Errorf("identityLine without a VIN = %q", got)
	}
}
