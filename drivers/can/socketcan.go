package can

import (
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/socketcan"
)

func (d *Driver) socketOptions() socketcan.Options {
	fd := false
	for _, m := range d.db.Messages {
		if m.Length > canbus.MaxClassicLen {
			fd = true
			break
		}
	}
	return socketcan.Options{
		FD:          fd,
		ErrorFrames: true,
		Logger:      d.log,
	}
}
