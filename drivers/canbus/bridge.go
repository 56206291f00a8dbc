package canbus

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Serve shares v with other processes over a stream listener (a unix
// socket; loopback TCP is accepted for tests, other addresses are refused).
// Each accepted connection becomes one endpoint of v: frames it writes are
// sent on v, frames on v are written to it. A slow peer loses frames (counted
// by its endpoint) rather than slowing the bus. Serve closes l and every
// connection when ctx is done and returns nil then; it returns an error when
// Accept fails for another reason.
func Serve(ctx context.Context, l net.Listener, v *Virtual) error {
	if err := checkLocal(l.Addr()); err != nil {
		_ = l.Close()
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = l.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept can bridge connection: %w", err)
		}
		wg.Add(1)
		// Stops when the peer disconnects or ctx is done.
		go func() {
			defer wg.Done()
			serveConn(ctx, c, v)
		}()
	}
}

func checkLocal(a net.Addr) error {
	if ta, ok := a.(*net.TCPAddr); ok && !ta.IP.IsLoopback() {
		return fmt.Errorf("serve can bridge on %s: only unix sockets and loopback are allowed", a)
	}
	return nil
}

// serveConn bridges one connection to a new endpoint of v until either side
// ends.
func serveConn(ctx context.Context, c net.Conn, v *Virtual) {
	stopHello := context.AfterFunc(ctx, func() { _ = c.Close() })
	err := handshake(c, helloTimeout)
	stopHello()
	if err != nil {
		_ = c.Close()
		return
	}
	ep := v.Attach()
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(ctx, func() {
		_ = c.Close()
		_ = ep.Close()
	})
	defer stop()
	done := make(chan struct{})
	// Stops when the endpoint or the connection is closed.
	go func() {
		defer close(done)
		defer cancel()
		writeFrames(ctx, c, ep)
	}()
	readFrames(ctx, c, ep)
	cancel()
	<-done
	_ = c.Close()
	_ = ep.Close()
}

// WireCoalesce is how long Serve's writer gathers frames for a busy
// connection after a batch's first one before writing them as one batch:
// the peer then reads milliseconds of traffic with one system call and one
// wake-up instead of one per frame. A connection is busy while its
// batches are at least wireBusy frames; a quiet one's frames are written
// at once (no added latency).
var WireCoalesce = 4 * time.Millisecond

// wireBusy is the batch size from which the writer coalesces.
const wireBusy = 8

// writeFrames copies frames from ep to w in batches: what is queued is
// written at once, and on a busy bus everything that arrives within
// WireCoalesce of a batch's first frame (or until the batch buffer is
// full) too.
func writeFrames(ctx context.Context, w io.Writer, ep *Endpoint) {
	buf := make([]byte, 0, 32<<10)
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	last := 0 // frames in the previous batch
	for {
		f, err := ep.Receive(ctx)
		if err != nil {
			return
		}
		buf = AppendWire(buf[:0], &f)
		n := 1
		for len(buf) < cap(buf)-MaxWireLen {
			f, ok := ep.tryReceive()
			if !ok {
				break
			}
			buf = AppendWire(buf, &f)
			n++
		}
		if last >= wireBusy || n >= wireBusy {
			t.Reset(WireCoalesce)
		gather:
			for len(buf) < cap(buf)-MaxWireLen {
				select {
				case f := <-ep.queue:
					buf = AppendWire(buf, &f)
					n++
				case <-t.C:
					break gather
				case <-ep.done:
					return
				case <-ctx.Done():
					return
				}
			}
			t.Stop()
		}
		last = n
		if _, err := w.Write(buf); err != nil {
			return
		}
	}
}

// readFrames decodes frames from r and sends them on ep until r fails or
// carries a malformed record.
func readFrames(ctx context.Context, r io.Reader, ep *Endpoint) {
	_ = readWire(r, func(f *Frame) error { return ep.Send(ctx, *f) })
}

// readWire decodes wire records from r, calling fn for each, until r or fn
// fails. It returns io.EOF at a clean end of stream.
func readWire(r io.Reader, fn func(*Frame) error) error {
	br := bufio.NewReaderSize(r, 16<<10)
	var f Frame
	for {
		hdr, err := br.Peek(1)
		if err != nil {
			return err
		}
		rec, err := br.Peek(1 + int(hdr[0]))
		if err != nil {
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		n, err := DecodeWire(rec, &f)
		if err != nil {
			return err
		}
		if _, err := br.Discard(n); err != nil {
			return err
		}
		if err := fn(&f); err != nil {
			return err
		}
	}
}

// Conn is a process's endpoint on a virtual bus served by Serve in another
// process. It implements Bus and BatchReceiver. Receive and ReceiveBatch
// read and decode the stream in the caller's goroutine (no reader
// goroutine, no channel hop: one system call and one wake-up bring a whole
// batch of frames). The served side counts frames a slow Conn misses
// (Serve's endpoint drops them); Dropped reports 0.
type Conn struct {
	c    net.Conn
	once sync.Once
	done chan struct{} // closed by Close

	rmu sync.Mutex // serialises receiving
	br  *bufio.Reader
	// rxErr is why the stream ended (io.EOF when the peer closed it);
	// set once, before dead is.
	rxErr error
	dead  atomic.Bool

	wmu  sync.Mutex
	wbuf []byte // guarded by wmu
}

var (
	_ Bus           = (*Conn)(nil)
	_ BatchReceiver = (*Conn)(nil)
	_ DropCounter   = (*Conn)(nil)
)

// Dial connects to a virtual bus served on the unix socket at address (a
// path, optionally prefixed "unix:").
func Dial(ctx context.Context, address string) (*Conn, error) {
	path := strings.TrimPrefix(address, "unix:")
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("dial virtual can bus %s: %w", path, err)
	}
	timeout := helloTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if err := handshake(c, timeout); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("dial virtual can bus %s: %w", path, err)
	}
	return newConn(c), nil
}

func newConn(c net.Conn) *Conn {
	return &Conn{c: c, br: bufio.NewReaderSize(c, 32<<10), done: make(chan struct{})}
}

// Send writes f to the served bus. ctx's deadline bounds the write.
func (bc *Conn) Send(ctx context.Context, f Frame) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("send on virtual can bus: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if bc.dead.Load() { // the peer has gone: do not write into a dead stream
		return fmt.Errorf("send on virtual can bus: %w", bc.rxErr)
	}
	bc.wmu.Lock()
	defer bc.wmu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		_ = bc.c.SetWriteDeadline(dl)
		defer func() { _ = bc.c.SetWriteDeadline(noDeadline) }()
	}
	bc.wbuf = AppendWire(bc.wbuf[:0], &f)
	if _, err := bc.c.Write(bc.wbuf); err != nil {
		return fmt.Errorf("send on virtual can bus: %w", err)
	}
	return nil
}

// Receive returns the next frame from the served bus. After the peer has
// gone it returns the reason (io.EOF when it closed cleanly); after Close
// an error wrapping net.ErrClosed.
func (bc *Conn) Receive(ctx context.Context) (Frame, error) {
	var fs [1]Frame
	if _, err := bc.ReceiveBatch(ctx, fs[:]); err != nil {
		return Frame{}, err
	}
	return fs[0], nil
}

// ReceiveBatch blocks until at least one frame has arrived, then returns
// as many as are already buffered (up to len(fs)) without blocking again.
func (bc *Conn) ReceiveBatch(ctx context.Context, fs []Frame) (int, error) {
	if len(fs) == 0 {
		return 0, errors.New("receive on virtual can bus: empty buffer")
	}
	bc.rmu.Lock()
	defer bc.rmu.Unlock()
	n := 0
	for {
		if bc.closed() {
			return 0, fmt.Errorf("receive on virtual can bus: %w", net.ErrClosed)
		}
		// Decode what is buffered without reading.
		for n < len(fs) {
			b := bc.br.Buffered()
			if b == 0 {
				break
			}
			hdr, _ := bc.br.Peek(1)
			if b < 1+int(hdr[0]) {
				break
			}
			rec, _ := bc.br.Peek(1 + int(hdr[0]))
			k, err := DecodeWire(rec, &fs[n])
			if err != nil {
				return n, bc.fail(err)
			}
			_, _ = bc.br.Discard(k)
			n++
		}
		if n > 0 {
			return n, nil
		}
		if bc.dead.Load() {
			return 0, fmt.Errorf("receive on virtual can bus: %w", bc.rxErr)
		}
		if err := bc.fill(ctx); err != nil {
			return 0, err
		}
	}
}

// fill blocks until more of the stream is buffered, ctx is done or the
// stream ends.
func (bc *Conn) fill(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = bc.c.SetReadDeadline(aLongTimeAgo) })
	var err error
	if bc.br.Buffered() == 0 {
		_, err = bc.br.Peek(1)
	} else {
		hdr, _ := bc.br.Peek(1)
		_, err = bc.br.Peek(1 + int(hdr[0]))
	}
	if !stop() {
		// The deadline was (or is being) set: clear it for later reads.
		_ = bc.c.SetReadDeadline(noDeadline)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if err == nil || errors.Is(err, bufio.ErrBufferFull) {
		return nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) && !bc.closed() {
		// A deadline set by an earlier call's cancellation that landed
		// after that call had cleared it: clear it and read again.
		_ = bc.c.SetReadDeadline(noDeadline)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return nil
	}
	if bc.closed() {
		return fmt.Errorf("receive on virtual can bus: %w", net.ErrClosed)
	}
	if errors.Is(err, io.EOF) && bc.br.Buffered() > 0 {
		err = io.ErrUnexpectedEOF
	}
	return bc.fail(err)
}

// fail records why the stream ended; it cannot be resumed.
func (bc *Conn) fail(err error) error {
	if !bc.dead.Load() {
		bc.rxErr = err
		bc.dead.Store(true)
	}
	return fmt.Errorf("receive on virtual can bus: %w", bc.rxErr)
}

func (bc *Conn) closed() bool {
	select {
	case <-bc.done:
		return true
	default:
		return false
	}
}

// Close closes the connection; a blocked Receive returns. It is
// idempotent.
func (bc *Conn) Close() error {
	var err error
	bc.once.Do(func() {
		close(bc.done)
		err = bc.c.Close()
	})
	return err
}

// Dropped returns 0: frames a slow Conn misses are dropped, and counted,
// by the endpoint Serve keeps for it.
func (bc *Conn) Dropped() uint64 { return 0 }

// aLongTimeAgo is a deadline in the past that unblocks pending reads.
var aLongTimeAgo = time.Unix(1, 0)
