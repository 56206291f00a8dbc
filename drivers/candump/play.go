package candump

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
)

// PlayOptions configure Play.
type PlayOptions struct {
	// Speed is the replay speed factor (1 = real time); 0 sends as fast as
	// the bus takes frames.
	Speed float64
	// Interface plays only frames logged on this interface ("" = all).
	Interface string
}

// Play sends the frames of a candump -l log on bus with the log's timing
// (like can-utils canplayer) until the log ends or ctx is done, and returns
// the number of frames sent. It returns nil at the end of the log and when
// ctx is done.
func Play(ctx context.Context, r io.Reader, bus canbus.Bus, opts PlayOptions) (int, error) {
	rd := NewReader(r)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var (
		rec   Record
		first time.Time
		start = time.Now()
		n     int
	)
	for {
		if err := rd.Next(&rec); err != nil {
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, fmt.Errorf("play candump: %w", err)
		}
		if opts.Interface != "" && rec.Interface != opts.Interface {
			continue
		}
		if first.IsZero() {
			first = rec.Time
		}
		if opts.Speed > 0 {
			due := start.Add(time.Duration(float64(rec.Time.Sub(first)) / opts.Speed))
			if sleepUntil(ctx, timer, due) != nil {
				return n, nil
			}
		} else if ctx.Err() != nil {
			return n, nil
		}
		rec.Frame.Time = time.Time{}
		if err := bus.Send(ctx, rec.Frame); err != nil {
			if ctx.Err() != nil {
				return n, nil
			}
			return n, fmt.Errorf("play candump line %d: %w", rd.Line(), err)
		}
		n++
	}
}
