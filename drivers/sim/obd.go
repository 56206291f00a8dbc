package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/isotp"
)

// DefaultVIN is the simulated vehicle's VIN.
const DefaultVIN = "WTCUSXM0ZABC12345"

// ECUOptions configure a simulated OBD-II engine ECU.
type ECUOptions struct {
	// Bus is the ECU's own attachment to the bus (the caller owns it).
	Bus canbus.Bus
	// State returns the live vehicle state (a Vehicle's State method);
	// nil answers with a parked vehicle.
	State func() State
	// VIN is answered to mode 09 PID 02; "" means DefaultVIN.
	VIN string
	// Extended uses 29-bit identifiers (0x18DB33F1 / 0x18DAF1<Addr>)
	// instead of 11-bit (0x7DF / 0x7E8).
	Extended bool
	// Knobs are the initial knobs.
	Knobs  ECUKnobs
	Logger *slog.Logger
}

// ECUKnobs change the ECU's behaviour while it runs.
type ECUKnobs struct {
	// Delay is the time before each answer (longer than the tester's P2:
	// a slow ECU).
	Delay time.Duration
	// Silent makes the ECU answer nothing (ignition off, no ECU).
	Silent bool
}

// ECU is a simulated OBD-II engine ECU answering ISO 15765-4 requests:
// mode 01 supported-PID bitmaps and the standard PIDs the vehicle model
// has, mode 09 PID 02 (VIN, a multi-frame answer paced by the tester's
// flow control: block size, STmin, wait frames).
type ECU struct {
	o     ECUOptions
	log   *slog.Logger
	knobs atomic.Pointer[ECUKnobs]
	reqs  chan []byte
	flows chan isotp.Flow

	requests, answers atomic.Uint64
}

// ecuAddr is the simulated ECU's address (engine: 0x7E8 / 0x18DAF110).
const ecuAddr = 0x10

// NewECU returns a simulated ECU; run it with Run.
func NewECU(o ECUOptions) (*ECU, error) {
	if o.Bus == nil {
		return nil, errors.New("new ecu: bus is required")
	}
	if o.VIN == "" {
		o.VIN = DefaultVIN
	}
	if len(o.VIN) != 17 {
		return nil, fmt.Errorf("new ecu: vin %q is not 17 characters", o.VIN)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &ECU{o: o, log: log, reqs: make(chan []byte, 16), flows: make(chan isotp.Flow, 16)}
	k := o.Knobs
	e.knobs.Store(&k)
	return e, nil
}

// SetKnobs replaces the knobs.
func (e *ECU) SetKnobs(k ECUKnobs) { e.knobs.Store(&k) }

// Requests returns how many requests the ECU received and Answers how many
// it answered.
func (e *ECU) Requests() uint64 { return e.requests.Load() }

// Answers returns how many requests were answered.
func (e *ECU) Answers() uint64 { return e.answers.Load() }

func (e *ECU) ids() (functional, physical, response uint32) {
	if e.o.Extended {
		return 0x18DB33F1, 0x18DA00F1 | ecuAddr<<8, 0x18DAF100 | ecuAddr
	}
	return 0x7DF, 0x7E0, 0x7E8
}

// Run answers requests until ctx is done (nil) or the bus fails.
func (e *ECU) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		defer cancel()
		e.serve(ctx)
	})
	functional, physical, _ := e.ids()
	for {
		f, err := e.o.Bus.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ecu receive: %w", err)
		}
		if f.Extended != e.o.Extended || (f.ID != functional && f.ID != physical) || f.Len == 0 {
			continue
		}
		data := f.Payload()
		if fc, ok := isotp.ParseFlow(data); ok {
			if f.ID == physical {
				select {
				case e.flows <- fc:
				default:
				}
			}
			continue
		}
		n := int(data[0] & 0x0F)
		if data[0]>>4 != 0 || n == 0 || n > len(data)-1 {
			continue // only single-frame requests exist in OBD-II
		}
		select {
		case e.reqs <- append([]byte(nil), data[1:1+n]...):
		default:
		}
	}
}

// serve answers requests one at a time.
func (e *ECU) serve(ctx context.Context) {
	for {
		var req []byte
		select {
		case <-ctx.Done():
			return
		case req = <-e.reqs:
		}
		e.requests.Add(1)
		k := *e.knobs.Load()
		if k.Silent {
			continue
		}
		resp := e.answer(req)
		if resp == nil {
			continue
		}
		if k.Delay > 0 {
			t := time.NewTimer(k.Delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		// Flow control frames left over from an earlier exchange are stale.
		for drained := false; !drained; {
			select {
			case <-e.flows:
			default:
				drained = true
			}
		}
		if err := isotp.Transmit(ctx, ecuLink{e}, resp); err != nil {
			if ctx.Err() == nil {
				e.log.Warn("ecu answer failed", "err", err)
			}
			continue
		}
		e.answers.Add(1)
	}
}

type ecuLink struct{ e *ECU }

func (l ecuLink) Send(ctx context.Context, data isotp.Frame) error {
	_, _, resp := l.e.ids()
	f := canbus.Frame{ID: resp, Extended: l.e.o.Extended, Len: isotp.FrameLen}
	copy(f.Data[:], data[:])
	return l.e.o.Bus.Send(ctx, f)
}

func (l ecuLink) Flow(ctx context.Context, timeout time.Duration) (isotp.Flow, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case fc := <-l.e.flows:
		return fc, nil
	case <-t.C:
		return isotp.Flow{}, isotp.ErrTimeout
	case <-ctx.Done():
		return isotp.Flow{}, ctx.Err()
	}
}

// ecuPIDs are the mode 01 PIDs the simulated ECU supports.
var ecuPIDs = []byte{0x04, 0x05, 0x0C, 0x0D, 0x0F, 0x11, 0x1F, 0x2F, 0x33, 0x42, 0x46, 0xA6}

// answer returns the response to req, or nil for none (unsupported PIDs
// get no answer to a functional request, as on a real vehicle).
func (e *ECU) answer(req []byte) []byte {
	if len(req) < 2 {
		return nil
	}
	switch req[0] {
	case 0x01:
		pid := req[1]
		if pid%0x20 == 0 {
			return supportedBitmap(pid)
		}
		st := State{Ignition: IgnitionOff, Odometer: 12345.6, Fuel: 68, Battery: 12.6, Ambient: 15}
		if e.o.State != nil {
			st = e.o.State()
		}
		data := pidValue(pid, &st)
		if data == nil {
			return nil
		}
		return append([]byte{0x41, pid}, data...)
	case 0x09:
		if req[1] == 0x02 {
			return append([]byte{0x49, 0x02, 0x01}, e.o.VIN...)
		}
		if req[1] == 0x00 {
			return []byte{0x49, 0x00, 0x40, 0x00, 0x00, 0x00} // PID 02 supported
		}
	}
	return nil
}

func supportedBitmap(base byte) []byte {
	var bm [4]byte
	for _, p := range ecuPIDs {
		if p > base && p <= base+0x20 {
			i := int(p - base - 1)
			bm[i/8] |= 0x80 >> (i % 8)
		}
	}
	// Bit 0 of D: the next range has supported PIDs.
	for _, p := range ecuPIDs {
		if int(p) > int(base)+0x20 {
			bm[3] |= 1
			break
		}
	}
	if base > 0 && bm == [4]byte{} {
		return nil
	}
	return []byte{0x41, base, bm[0], bm[1], bm[2], bm[3]}
}

func clampByte(v float64) byte { return byte(math.Max(0, math.Min(255, math.Round(v)))) }

func be16(v float64) []byte {
	u := uint16(math.Max(0, math.Min(65535, math.Round(v))))
	return []byte{byte(u >> 8), byte(u)}
}

// pidValue encodes the state per SAE J1979.
func pidValue(pid byte, s *State) []byte {
	running := s.Ignition == IgnitionOn && s.RPM > 0
	switch pid {
	case 0x04:
		if !running {
			return []byte{0}
		}
		return []byte{clampByte((20 + s.Speed/2) * 255 / 100)}
	case 0x05:
		if !running {
			return []byte{clampByte(s.Ambient + 40)}
		}
		return []byte{clampByte(90 + 40)}
	case 0x0C:
		return be16(s.RPM * 4)
	case 0x0D:
		return []byte{clampByte(s.Speed)}
	case 0x0F:
		return []byte{clampByte(s.Ambient + 5 + 40)}
	case 0x11:
		return []byte{clampByte((s.Speed / 2) * 255 / 100)}
	case 0x1F:
		return be16(0)
	case 0x2F:
		return []byte{clampByte(s.Fuel * 255 / 100)}
	case 0x33:
		return []byte{101}
	case 0x42:
		return be16(s.Battery * 1000)
	case 0x46:
		return []byte{clampByte(s.Ambient + 40)}
	case 0xA6:
		u := uint32(math.Max(0, math.Round(s.Odometer*10)))
		return []byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)}
	}
	return nil
}
