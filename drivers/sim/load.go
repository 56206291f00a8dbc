package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
)

// BitsPerFrame is the average length on the wire of a classic CAN frame
// with an 11-bit identifier and 8 data bytes, including typical bit
// stuffing and the interframe space. A 1 Mbit/s bus is fully loaded at
// about 8,700 such frames per second.
const BitsPerFrame = 115

// LoadOptions configure a Load.
type LoadOptions struct {
	// Bus is where the filler frames go.
	Bus canbus.Bus
	// Percent of the bus to fill (0 < Percent <= 100).
	Percent float64
	// Bitrate of the bus in bit/s (500000 or 1000000 typically).
	Bitrate int
	// Exclude lists 11-bit identifiers the filler must not use (the
	// vehicle's own messages).
	Exclude []uint32
	// Existing is the traffic already on the bus in frames/s (the
	// vehicle's own messages); the filler makes up the rest.
	Existing float64
	// Seed makes the ID mix reproducible.
	Seed uint64
}

// Load generates filler traffic with a realistic mix of identifiers and
// cycle times (many slow messages, a few fast ones) at a chosen share of
// a bus's capacity.
type Load struct {
	bus  canbus.Bus
	msgs []loadMsg
	rate float64
}

type loadMsg struct {
	id     uint32
	period time.Duration
	next   time.Time
	data   [8]byte
}

// cycleMix is the distribution of cycle times on a typical vehicle bus,
// weighted by how many messages use each.
var cycleMix = []struct {
	period time.Duration
	weight int
}{
	{10 * time.Millisecond, 3}, {20 * time.Millisecond, 4}, {50 * time.Millisecond, 4},
	{100 * time.Millisecond, 6}, {200 * time.Millisecond, 2}, {500 * time.Millisecond, 2},
	{1000 * time.Millisecond, 4},
}

// NewLoad plans the filler messages for opts.
func NewLoad(opts LoadOptions) (*Load, error) {
	if opts.Bus == nil {
		return nil, errors.New("new bus load: no bus")
	}
	if opts.Percent <= 0 || opts.Percent > 100 || opts.Bitrate <= 0 {
		return nil, fmt.Errorf("new bus load: %v%% of %d bit/s: want 0 < percent <= 100 and a positive bitrate",
			opts.Percent, opts.Bitrate)
	}
	target := opts.Percent/100*float64(opts.Bitrate)/BitsPerFrame - opts.Existing
	rng := rand.New(rand.NewPCG(opts.Seed, 0x10ad))
	used := map[uint32]bool{}
	for _, id := range opts.Exclude {
		used[id] = true
	}
	total := 0
	for _, c := range cycleMix {
		total += c.weight
	}
	l := &Load{bus: opts.Bus}
	for l.rate < target && len(used) < canbus.MaxStandardID {
		id := uint32(0x080 + rng.IntN(canbus.MaxStandardID-0x080+1))
		if used[id] {
			continue
		}
		used[id] = true
		pick := rng.IntN(total)
		period := cycleMix[len(cycleMix)-1].period
		for _, c := range cycleMix {
			if pick < c.weight {
				period = c.period
				break
			}
			pick -= c.weight
		}
		// The last message takes whatever period tops the rate up exactly.
		if rem := target - l.rate; rem < float64(time.Second)/float64(period) {
			period = time.Duration(float64(time.Second) / rem)
		}
		m := loadMsg{id: id, period: period}
		for i := range m.data {
			m.data[i] = byte(rng.Uint32())
		}
		l.msgs = append(l.msgs, m)
		l.rate += float64(time.Second) / float64(period)
	}
	return l, nil
}

// Rate returns the planned frames per second.
func (l *Load) Rate() float64 { return l.rate }

// Messages returns the number of filler identifiers.
func (l *Load) Messages() int { return len(l.msgs) }

// Run sends the filler traffic until ctx is done (nil) or the bus fails.
func (l *Load) Run(ctx context.Context) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	start := time.Now()
	for i := range l.msgs {
		// Spread first sends over one period so the bus is not bursty.
		l.msgs[i].next = start.Add(time.Duration(i) * l.msgs[i].period / time.Duration(len(l.msgs)))
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if err := l.sendDue(ctx, now); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("bus load send: %w", err)
			}
		}
	}
}

func (l *Load) sendDue(ctx context.Context, now time.Time) error {
	for i := range l.msgs {
		m := &l.msgs[i]
		if now.Sub(m.next) > time.Second {
			m.next = now // resynchronise after a stall instead of bursting
		}
		for !m.next.After(now) {
			m.next = m.next.Add(m.period)
			m.data[0]++ // a rolling counter, as real ECUs send
			f := canbus.Frame{ID: m.id, Len: 8}
			copy(f.Data[:], m.data[:])
			if err := l.bus.Send(ctx, f); err != nil {
				return err
			}
		}
	}
	return nil
}
