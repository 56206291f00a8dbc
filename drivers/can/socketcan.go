package can

import (
	"context"
	"errors"

	"github.com/tcu-agent/tcu-agent/drivers"
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

// openSocketCAN opens a SocketCAN interface. A kernel without AF_CAN (or a
// non-Linux system) is a FatalError: retrying cannot help.
func openSocketCAN(_ context.Context, iface string, opts socketcan.Options) (canbus.Bus, error) {
	c, err := socketcan.Open(iface, opts)
	if err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			return nil, &drivers.FatalError{Err: err}
		}
		return nil, err
	}
	return c, nil
}
