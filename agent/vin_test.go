package agent

import (
	"context"
	"testing"

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
