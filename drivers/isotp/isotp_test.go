package isotp

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pipeLink is a Link whose frames go to a Receiver run by the test, which
// answers first frames and every BlockSize consecutive frames with flow
// control (preceded by `waits` wait frames).
type pipeLink struct {
	rx        Receiver
	blockSize int
	stmin     byte
	waits     int
	overflow  bool
	flows     chan Flow
	got       []byte
	frames    []Frame
	sentAt    []time.Time
}

func newPipe(bs int, stmin byte) *pipeLink {
	return &pipeLink{rx: Receiver{BlockSize: bs}, blockSize: bs, stmin: stmin, flows: make(chan Flow, 64)}
}

func (p *pipeLink) fc() {
	for range p.waits {
		p.flows <- Flow{Status: FlowWait}
	}
	st := FlowContinue
	if p.overflow {
		st = FlowOverflow
	}
	f := FlowControl(st, p.blockSize, p.stmin)
	fl, _ := ParseFlow(f[:])
	p.flows <- fl
}

func (p *pipeLink) Send(_ context.Context, f Frame) error {
	p.frames = append(p.frames, f)
	p.sentAt = append(p.sentAt, time.Now())
	msg, res, err := p.rx.Feed(f[:])
	if err != nil {
		return err
	}
	switch res {
	case SendFlow:
		p.fc()
	case Complete:
		p.got = append([]byte(nil), msg...)
	}
	return nil
}

func (p *pipeLink) Flow(ctx context.Context, timeout time.Duration) (Flow, error) {
	select {
	case f := <-p.flows:
		return f, nil
	case <-time.After(timeout):
		return Flow{}, ErrTimeout
	case <-ctx.Done():
		return Flow{}, ctx.Err()
	}
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 1)
	}
	return b
}

func TestTransmitReassembleRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		n     int
		bs    int
		stmin byte
		waits int
	}{
		{"single 1", 1, 0, 0, 0},
		{"single 7", 7, 0, 0, 0},
		{"two frames", 8, 0, 0, 0},
		{"vin response", 20, 0, 0, 0},
		{"block size 1", 20, 1, 0, 0},
		{"block size 2 stmin 2ms", 40, 2, 2, 0},
		{"stmin 300us", 30, 0, 0xF3, 0},
		{"sequence wraps", 200, 0, 0, 0},
		{"wait frames", 20, 0, 0, 3},
		{"longest", MaxLen, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPipe(tt.bs, tt.stmin)
			p.waits = tt.waits
			want := payload(tt.n)
			if err := Transmit(context.Background(), p, want); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p.got, want) {
				t.Fatalf("reassembled %d bytes, want %d", len(p.got), len(want))
			}
			wantFrames := 1
			if tt.n > MaxSingle {
				wantFrames = 1 + (tt.n-6+6)/7
			}
			if len(p.frames) != wantFrames {
				t.Errorf("%d frames, want %d", len(p.frames), wantFrames)
			}
			if st := SeparationTime(tt.stmin); st > 0 {
				for i := 2; i < len(p.sentAt); i++ {
					if gap := p.sentAt[i].Sub(p.sentAt[i-1]); gap < st {
						t.Errorf("frames %d and %d %v apart, STmin %v", i-1, i, gap, st)
					}
				}
			}
		})
	}
}

func TestTransmitOverflowAndTimeout(t *testing.T) {
	t.Parallel()
	p := newPipe(0, 0)
	p.overflow = true
	if err := Transmit(context.Background(), p, payload(20)); !errors.Is(err, ErrOverflow) {
		t.Errorf("Transmit() with overflow flow control = %v, want ErrOverflow", err)
	}
	p = newPipe(0, 0)
	p.waits = MaxWaits + 1
	if err := Transmit(context.Background(), p, payload(20)); !errors.Is(err, ErrProtocol) {
		t.Errorf("Transmit() with endless waits = %v, want ErrProtocol", err)
	}
}

func TestReceiverErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		frames [][]byte
		want   error
		res    Result
	}{
		{"cf without ff", [][]byte{{0x21, 1, 2, 3, 4, 5, 6, 7}}, ErrProtocol, Nothing},
		{"bad sequence", [][]byte{{0x10, 20, 1, 2, 3, 4, 5, 6}, {0x22, 1, 2, 3, 4, 5, 6, 7}}, ErrProtocol, Nothing},
		{"sf length 0", [][]byte{{0x00, 1}}, ErrProtocol, Nothing},
		{"sf longer than frame", [][]byte{{0x07, 1, 2}}, ErrProtocol, Nothing},
		{"ff too short", [][]byte{{0x10, 5, 1, 2, 3, 4, 5, 6}}, ErrProtocol, Nothing},
		{"ff over limit", [][]byte{{0x1F, 0xFF, 1, 2, 3, 4, 5, 6}}, ErrOverflow, Abort},
		{"unknown type", [][]byte{{0x40, 1}}, ErrProtocol, Nothing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := Receiver{Limit: 100}
			var err error
			var res Result
			for _, f := range tt.frames {
				_, res, err = r.Feed(f)
			}
			if !errors.Is(err, tt.want) || res != tt.res {
				t.Errorf("Feed() = %v, %v; want %v, %v", res, err, tt.want, tt.res)
			}
			if r.Busy() {
				t.Error("receiver still busy after an error")
			}
		})
	}
}

func TestSTmin(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		d time.Duration
		b byte
	}{{0, 0}, {5 * time.Millisecond, 5}, {127 * time.Millisecond, 127}, {time.Second, 127}, {300 * time.Microsecond, 0xF3}, {10 * time.Microsecond, 0xF1}} {
		if got := STmin(tt.d); got != tt.b {
			t.Errorf("STmin(%v) = %#x, want %#x", tt.d, got, tt.b)
		}
	}
	for _, tt := range []struct {
		b byte
		d time.Duration
	}{{0, 0}, {0x7F, 127 * time.Millisecond}, {0xF1, 100 * time.Microsecond}, {0xF9, 900 * time.Microsecond}, {0x80, 127 * time.Millisecond}, {0xFA, 127 * time.Millisecond}} {
		if got := SeparationTime(tt.b); got != tt.d {
			t.Errorf("SeparationTime(%#x) = %v, want %v", tt.b, got, tt.d)
		}
	}
}

// FuzzReceiver feeds arbitrary frame sequences: the receiver must never
// panic, never return more than it was promised, and never a message
// longer than its limit.
func FuzzReceiver(f *testing.F) {
	f.Add([]byte{0x10, 0x14, 0x49, 0x02, 0x01, 0x31, 0x48, 0x47, 0x21, 0x43, 0x4D, 0x38, 0x32, 0x36, 0x33, 0x33, 0x22, 0x41, 0x30, 0x30, 0x34, 0x33, 0x35, 0x32})
	f.Add([]byte{0x03, 0x41, 0x0D, 0x32, 0xCC, 0xCC, 0xCC, 0xCC})
	f.Add([]byte{0x21, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := Receiver{Limit: 256}
		want := 0
		for len(b) > 0 {
			n := min(len(b), FrameLen)
			frame := b[:n]
			b = b[n:]
			if frame[0]>>4 == pciFirst && len(frame) >= 2 {
				want = int(frame[0]&0x0F)<<8 | int(frame[1])
			}
			msg, res, err := r.Feed(frame)
			if err != nil {
				continue
			}
			if res == Complete {
				if len(msg) > 256 || (frame[0]>>4 == pciConsecutive && len(msg) != want) {
					t.Fatalf("message of %d bytes, first frame said %d", len(msg), want)
				}
			}
		}
	})
}
