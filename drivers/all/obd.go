//go:build !custom || driver_obd

package all

import _ "github.com/tcu-agent/tcu-agent/drivers/obd" // registers kind "obd"
