package agent

import (
	"time"

	"github.com/tcu-agent/tcu-agent/agent/config"
)

// vinReader is implemented by drivers that read the vehicle's VIN (the
// obd driver, once an ECU has answered mode 09 PID 02).
type vinReader interface{ VIN() string }

// vehicleVIN returns the VIN the first driver that has one read, or "".
func vehicleVIN(c *config.Config) string {
	if c == nil {
		return ""
	}
	for _, d := range c.Drivers {
		if r, ok := d.Driver.(vinReader); ok {
			if v := r.VIN(); v != "" {
				return v
			}
		}
	}
	return ""
}

// vinWait bounds how long RegisterThing waits for a VIN that a running
// driver is about to read (ignition on, ECUs answering).
const vinWait = 5 * time.Second

// vinPending reports whether a running driver expects to read the VIN soon.
func vinPending(c *config.Config) bool {
	for _, d := range c.Drivers {
		if p, ok := d.Driver.(interface{ VINPending() bool }); ok && p.VINPending() {
			return true
		}
	}
	return false
}

// deviceParams is provisioning's hook for RegisterThing parameters known
// only at run time: the VIN, as "Vin", once a driver has read it. While a
// running driver is still reading it, it waits up to vinWait; with the
// ignition off (silent ECUs) or no such driver it does not wait.
func deviceParams(c *config.Config) func() map[string]string {
	return func() map[string]string {
		if c == nil {
			return nil
		}
		for deadline := time.Now().Add(vinWait); vehicleVIN(c) == "" && vinPending(c) && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
		if v := vehicleVIN(c); v != "" {
			return map[string]string{"Vin": v}
		}
		return nil
	}
}
