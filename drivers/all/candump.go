//go:build !custom || driver_candump

package all

import _ "github.com/tcu-agent/tcu-agent/drivers/candump" // registers kind "candump"
