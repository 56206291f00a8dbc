//go:build !custom || driver_gnss

package all

import _ "github.com/tcu-agent/tcu-agent/drivers/gnss" // registers kind "gnss"
