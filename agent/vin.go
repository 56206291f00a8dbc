package agent

import "github.com/tcu-agent/tcu-agent/agent/config"

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

// deviceParams is provisioning's hook for RegisterThing parameters known
// only at run time: the VIN, as "Vin", once a driver has read it.
func deviceParams(c *config.Config) func() map[string]string {
	return func() map[string]string {
		if v := vehicleVIN(c); v != "" {
			return map[string]string{"Vin": v}
		}
		return nil
	}
}
