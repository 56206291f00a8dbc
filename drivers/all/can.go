//go:build !custom || driver_can

package all

import _ "github.com/tcu-agent/tcu-agent/drivers/can" // registers kind "can"
