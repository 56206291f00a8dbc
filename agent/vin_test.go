package agent

import (
	"context"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/config"
	"github.com/tcu-agent/tcu-agent/drivers"
)

type vinDriver struct{ vin string }

func (vinDriver) Init() error                                   { return nil }
func (vinDriver) Run(ctx context.Context, _ drivers.Sink) error { <-ctx.Done(); return nil }
func (d vinDriver) VIN() string                                 { return d.vin }

type plainDriver struct{ vinDriver }

func TestDeviceParamsCarryTheVIN(t *testing.T) {
	t.Parallel()
	c := &config.Config{Drivers: []config.Driver{
		{Name: "can", Driver: plainDriver{}},
		{Name: "obd", Driver: vinDriver{}},
	}}
	if got := deviceParams(c)(); got != nil {
		t.Errorf("deviceParams before a VIN = %v, want nil", got)
	}
	c.Drivers[1].Driver = vinDriver{vin: "1G1JC5444R7252367"}
	if got := deviceParams(c)(); got["Vin"] != "1G1JC5444R7252367" || len(got) != 1 {
		t.Errorf("deviceParams = %v, want Vin", got)
	}
	if got := vehicleVIN(nil); got != "" {
		t.Errorf("vehicleVIN(nil) = %q", got)
	}
}

// pendingDriver reads its VIN after a delay and says so meanwhile.
type pendingDriver struct {
	vinDriver
	at time.Time
}

func (d pendingDriver) VIN() string {
	if time.Now().After(d.at) {
		return "WTCUSXM0ZABC12345"
	}
	return ""
}
func (d pendingDriver) VINPending() bool { return d.VIN() == "" }

func TestDeviceParamsWaitForAPendingVIN(t *testing.T) {
	t.Parallel()
	c := &config.Config{Drivers: []config.Driver{{Name: "obd", Driver: pendingDriver{at: time.Now().Add(300 * time.Millisecond)}}}}
	if got := deviceParams(c)(); got["Vin"] != "WTCUSXM0ZABC12345" {
		t.Errorf("deviceParams = %v, want the VIN read meanwhile", got)
	}
}
