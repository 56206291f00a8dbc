package obd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/drivers/isotp"
	"github.com/tcu-agent/tcu-agent/drivers/socketcan"
	"github.com/tcu-agent/tcu-agent/internal/backoff"
)

// Services.
const (
	svcCurrentData = 0x01
	svcVehicleInfo = 0x09
	pidVIN         = 0x02
	negative       = 0x7F
	nrcPending     = 0x78
)

// Run polls until ctx is done. An absent bus or silent ECUs are not
// errors: the bus is reconnected and silence backs off.
func (d *Driver) Run(ctx context.Context, sink drivers.Sink) error {
	if d.polls == nil {
		return &drivers.FatalError{Err: fmt.Errorf("obd driver %s: run before init", d.params.Name)}
	}
	d.running.Store(true)
	defer d.running.Store(false)
	bus := d.attach()
	d.bus.Store(&busRef{bus})
	defer d.bus.Store(nil)
	rx := make(chan canbus.Frame, 256)
	readErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() { readErr <- d.read(ctx, bus, rx) })
	s := &session{d: d, bus: bus, rx: rx, readErr: readErr, sink: sink, next: make([]time.Time, len(d.polls))}
	err := s.loop(ctx)
	_ = bus.Close()
	wg.Wait()
	d.silent.Store(0)
	if ctx.Err() != nil {
		return nil
	}
	if errors.Is(err, errors.ErrUnsupported) { // no AF_CAN: retrying cannot help
		return &drivers.FatalError{Err: err}
	}
	return err
}

// busKey names the bus for canbus.Quiet, as the can driver does.
func (d *Driver) busKey() string {
	if d.Transport == TransportVBus {
		return canbus.BusKey(TransportVBus, d.Address)
	}
	return canbus.BusKey(TransportSocketCAN, d.Interface)
}

// attach returns the self-reconnecting bus of the configured transport.
func (d *Driver) attach() canbus.Bus {
	if d.Transport == TransportSocketCAN {
		return socketcan.Reopen(d.Interface, socketcan.Options{Logger: d.log}, socketcan.Backoff{Min: canbus.RedialMin, Max: canbus.RedialMax})
	}
	return canbus.NewRedialer(canbus.RedialOptions{
		Dial: func(ctx context.Context) (canbus.Bus, error) { return canbus.Dial(ctx, d.Address) },
		Lost: gone, Name: "vbus " + d.Address, Logger: d.log,
	})
}

func gone(err error) bool {
	return errors.Is(err, drivers.ErrNotReady) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}

// read forwards OBD response frames to rx until the bus fails or closes.
func (d *Driver) read(ctx context.Context, bus canbus.Bus, rx chan<- canbus.Frame) error {
	fs := make([]canbus.Frame, 32)
	for {
		n, err := canbus.ReceiveBatch(ctx, bus, fs)
		if err != nil {
			return err
		}
		for i := range fs[:n] {
			if _, ok := d.responder(&fs[i]); !ok {
				continue
			}
			select {
			case rx <- fs[i]:
			default: // the poller is not waiting for this much: drop
			}
		}
	}
}

// responder returns the physical request identifier of the ECU that sent
// f (where flow control goes), if f is an OBD response.
func (d *Driver) responder(f *canbus.Frame) (uint32, bool) {
	if d.Addressing == Addr29 {
		if !f.Extended || f.ID&0xFFFFFF00 != respPrefix29 {
			return 0, false
		}
		ecu := f.ID & 0xFF
		return 0x18DA00F1 | ecu<<8, true
	}
	if f.Extended || f.ID < respBase11 || f.ID > respBase11+7 {
		return 0, false
	}
	return f.ID - 8, true
}

func (d *Driver) frame(id uint32, data isotp.Frame) canbus.Frame {
	f := canbus.Frame{ID: id, Extended: d.Addressing == Addr29, Len: isotp.FrameLen}
	copy(f.Data[:], data[:])
	return f
}

func (d *Driver) functionalID() uint32 {
	if d.Addressing == Addr29 {
		return funcID29
	}
	return funcID11
}

// session is one Run's polling state.
type session struct {
	d       *Driver
	bus     canbus.Bus
	rx      <-chan canbus.Frame
	readErr <-chan error
	sink    drivers.Sink

	discovered bool
	supported  map[byte]bool // nil: not known (discovery unanswered)
	ecus       int           // ECUs that answered discovery
	vinDone    bool
	next       []time.Time
	silentN    int
	backoffN   int
	quiet      bool // logged "no ECU answers"
}

// response is one ECU's complete answer.
type response struct {
	ecu     uint32
	payload []byte
	at      time.Time
}

func (s *session) loop(ctx context.Context) error {
	d := s.d
	for {
		if err := s.pause(ctx); err != nil {
			return err
		}
		if err := s.holdForActuation(ctx); err != nil {
			return err
		}
		switch {
		case !s.discovered:
			s.discover(ctx)
		case d.ReadVIN && !s.vinDone:
			s.readVIN(ctx)
		default:
			i := s.due()
			if wait := time.Until(s.next[i]); wait > 0 {
				if err := s.sleep(ctx, wait); err != nil {
					return err
				}
			}
			s.pollPID(ctx, i)
			s.next[i] = time.Now().Add(d.polls[i].interval)
		}
		if err := s.sleep(ctx, d.Gap.Std()); err != nil {
			return err
		}
	}
}

// due returns the index of the poll due first (supported ones only, when
// the supported set is known).
func (s *session) due() int {
	best := -1
	for i, p := range s.d.polls {
		if s.supported != nil && !s.supported[p.pid] {
			continue
		}
		if best < 0 || s.next[i].Before(s.next[best]) {
			best = i
		}
	}
	if best < 0 {
		// Nothing configured is supported: re-discover now and then.
		s.discovered = false
		return 0
	}
	return best
}

// holdForActuation waits while a driver actuating on the same bus (a
// remote command's frames, see canbus.Quiet) asked for quiet.
func (s *session) holdForActuation(ctx context.Context) error {
	key := s.d.busKey()
	for {
		wait := time.Until(canbus.QuietUntil(key))
		if wait <= 0 {
			return nil
		}
		s.d.holds.Add(1)
		if err := s.sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// pause backs off while the ECUs are silent.
func (s *session) pause(ctx context.Context) error {
	if s.silentN < silentLimit {
		return nil
	}
	d := s.d
	wait := backoff.Policy{Base: firstBackoff, Max: d.BackoffMax.Std()}.Nominal(s.backoffN)
	s.backoffN++
	s.silentN = silentLimit - 1 // one probe after the pause
	d.backoffs.Add(1)
	d.silent.Store(1)
	if !s.quiet {
		d.log.Warn("no OBD-II ECU answers; backing off", "wait", wait)
		s.quiet = true
	}
	return s.sleep(ctx, wait)
}

func (s *session) answered() {
	if s.quiet {
		s.d.log.Info("OBD-II ECUs answering again")
	}
	s.silentN, s.backoffN, s.quiet = 0, 0, false
	s.d.silent.Store(0)
}

// sleep waits d, or until ctx is done or the bus reader failed (an error
// that reconnecting cannot fix).
func (s *session) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-s.readErr:
		return fmt.Errorf("obd driver %s: receive: %w", s.d.params.Name, err)
	case <-t.C:
		return nil
	}
}

// discover asks which mode 01 PIDs the ECUs support, range by range.
func (s *session) discover(ctx context.Context) {
	d := s.d
	sup := map[byte]bool{}
	ecus := map[uint32]bool{}
	for base := 0; base <= 0xE0; base += 0x20 {
		rs := s.request(ctx, []byte{svcCurrentData, byte(base)})
		if len(rs) == 0 {
			if base == 0 {
				return // no answer: silent (counted by request); try again later
			}
			break
		}
		more := false
		for _, r := range rs {
			if len(r.payload) < 6 || r.payload[1] != byte(base) {
				d.errs.Add(1)
				continue
			}
			ecus[r.ecu] = true
			_ = SupportedPIDs(byte(base), r.payload[2:6], func(p byte) { sup[p] = true })
			if r.payload[5]&1 != 0 {
				more = true
			}
		}
		if !more {
			break
		}
	}
	s.discovered, s.supported, s.ecus = true, sup, len(ecus)
	d.supported.Store(uint64(len(sup)))
	var missing []string
	for _, p := range d.polls {
		if !sup[p.pid] {
			missing = append(missing, fmt.Sprintf("%#02x", p.pid))
		}
	}
	sort.Strings(missing)
	d.log.Info("OBD-II ECUs discovered", "ecus", len(ecus), "supported_pids", len(sup), "unsupported_configured", missing)
}

// readVIN asks for mode 09 PID 02.
func (s *session) readVIN(ctx context.Context) {
	d := s.d
	rs := s.request(ctx, []byte{svcVehicleInfo, pidVIN})
	for _, r := range rs {
		if len(r.payload) < 2 || r.payload[1] != pidVIN {
			continue
		}
		vin, err := ParseVIN(r.payload[2:])
		if err != nil {
			d.errs.Add(1)
			d.log.Warn("OBD-II VIN unusable", "ecu", fmt.Sprintf("%#x", r.ecu), "err", err)
			continue
		}
		d.vinMu.Lock()
		changed := d.vin != vin
		d.vin = vin
		d.vinMu.Unlock()
		if changed {
			d.log.Info("OBD-II VIN read", "vin", vin)
		}
		s.sink.Emit(drivers.Sample{Name: SignalVIN, Label: vin, Time: r.at, Source: d.params.Name})
		d.samples.Add(1)
		s.vinDone = true
		return
	}
	if len(rs) > 0 || s.silentN == 0 {
		// Answered without a usable VIN (or negatively): do not ask again.
		s.vinDone = true
		d.noVIN.Store(true) // nothing to wait for (VINPending)
	}
}

// pollPID requests one configured PID and emits its value.
func (s *session) pollPID(ctx context.Context, i int) {
	d := s.d
	p := d.polls[i]
	for _, r := range s.request(ctx, []byte{svcCurrentData, p.pid}) {
		if len(r.payload) < 2 || r.payload[1] != p.pid {
			continue
		}
		v, err := DecodePID(p.pid, r.payload[2:])
		if err != nil {
			d.errs.Add(1)
			continue
		}
		s.sink.Emit(drivers.Sample{Name: p.name, Value: v, Time: r.at, Source: d.params.Name})
		d.samples.Add(1)
		return // the first ECU's answer
	}
}

// request sends one functional request and collects the ECUs' positive
// responses until P2 has passed without more to come (or every ECU seen in
// discovery has answered). Negative responses count as errors, except
// "response pending", which extends the wait to P2*.
func (s *session) request(ctx context.Context, req []byte) []response {
	d := s.d
	// Drop anything left over from an earlier request.
	for drained := false; !drained; {
		select {
		case <-s.rx:
		default:
			drained = true
		}
	}
	sf, err := isotp.Single(req)
	if err != nil {
		d.errs.Add(1)
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	err = s.bus.Send(sctx, d.frame(d.functionalID(), sf))
	cancel()
	if err != nil {
		// The frame may have gone out all the same: treat it as in
		// flight for P2 before anything else is sent.
		d.errs.Add(1)
		d.sendErrs.Add(1)
		s.silentN++
		_ = s.sleep(ctx, d.P2.Std())
		return nil
	}
	d.requests.Add(1)
	var out []response
	rxs := map[uint32]*isotp.Receiver{}
	deadline := time.Now().Add(d.P2.Std())
	t := time.NewTimer(d.P2.Std())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return out
		case <-t.C:
			if len(out) == 0 {
				d.timeouts.Add(1)
				s.silentN++
			}
			return out
		case f := <-s.rx:
			phys, _ := d.responder(&f)
			r := rxs[f.ID]
			if r == nil {
				r = &isotp.Receiver{BlockSize: d.BlockSize}
				rxs[f.ID] = r
			}
			msg, res, err := r.Feed(f.Payload())
			if err != nil {
				d.errs.Add(1)
			}
			extend := time.Duration(0)
			switch res {
			case isotp.SendFlow, isotp.Abort:
				status := isotp.FlowContinue
				if res == isotp.Abort {
					status = isotp.FlowOverflow
				}
				fc := isotp.FlowControl(status, d.BlockSize, isotp.STmin(d.STmin.Std()))
				if err := s.bus.Send(ctx, d.frame(phys, fc)); err != nil {
					d.errs.Add(1)
				}
				extend = consecutiveWait
			case isotp.Nothing:
				if r.Busy() {
					extend = consecutiveWait
				}
			case isotp.Complete:
				switch {
				case len(msg) >= 3 && msg[0] == negative && msg[1] == req[0] && msg[2] == nrcPending:
					extend = DefaultP2Star
				case len(msg) >= 1 && msg[0] == negative:
					d.errs.Add(1)
				case len(msg) >= 2 && msg[0] == req[0]+0x40 && msg[1] != req[1]:
					// A late answer to an earlier request (a slow ECU):
					// not this request's.
				case len(msg) >= 2 && msg[0] == req[0]+0x40:
					d.responses.Add(1)
					s.answered()
					out = append(out, response{ecu: f.ID, payload: append([]byte(nil), msg...), at: f.Time})
					if s.ecus > 0 && len(out) >= s.ecus && !anyBusy(rxs) {
						return out
					}
				}
			}
			if extend > 0 {
				if dl := time.Now().Add(extend); dl.After(deadline) {
					deadline = dl
				}
				t.Reset(time.Until(deadline))
			}
		}
	}
}

func anyBusy(rxs map[uint32]*isotp.Receiver) bool {
	for _, r := range rxs {
		if r.Busy() {
			return true
		}
	}
	return false
}
