package canbus

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
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
		l.Close()
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { l.Close() })
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
	stopHello := context.AfterFunc(ctx, func() { c.Close() })
	err := handshake(c, helloTimeout)
	stopHello()
	if err != nil {
		c.Close()
		return
	}
	ep := v.Attach()
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(ctx, func() {
		c.Close()
		ep.Close()
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
	c.Close()
	ep.Close()
}

// writeFrames copies frames from ep to w, batching whatever is queued into
// one write.
func writeFrames(ctx context.Context, w io.Writer, ep *Endpoint) {
	buf := make([]byte, 0, 32<<10)
	for {
		f, err := ep.Receive(ctx)
		if err != nil {
			return
		}
		buf = AppendWire(buf[:0], &f)
		for len(buf) < cap(buf)-MaxWireLen {
			f, ok := ep.tryReceive()
			if !ok {
				break
			}
			buf = AppendWire(buf, &f)
		}
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
// process. It implements Bus and DropCounter.
type Conn struct {
	c       net.Conn
	rx      chan Frame
	rxDone  chan struct{} // closed when the reader goroutine has ended
	rxErr   error         // why the reader ended; written before rxDone closes
	done    chan struct{} // closed by Close
	once    sync.Once
	wmu     sync.Mutex
	wbuf    []byte // guarded by wmu
	dropped atomic.Uint64
}

var (
	_ Bus         = (*Conn)(nil)
	_ DropCounter = (*Conn)(nil)
)

// Dial connects to a virtual bus served on the unix socket at address (a
// path, optionally prefixed "unix:"). The connection buffers up to
// DefaultQueueLen received frames and drops (and counts) beyond that.
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
		c.Close()
		return nil, fmt.Errorf("dial virtual can bus %s: %w", path, err)
	}
	return newConn(c), nil
}

func newConn(c net.Conn) *Conn {
	bc := &Conn{
		c:      c,
		rx:     make(chan Frame, DefaultQueueLen),
		rxDone: make(chan struct{}),
		done:   make(chan struct{}),
	}
	// Stops when the connection is closed (by Close or by the peer).
	go bc.readLoop()
	return bc
}

func (bc *Conn) readLoop() {
	err := readWire(bc.c, func(f *Frame) error {
		select {
		case bc.rx <- *f:
		default:
			bc.dropped.Add(1)
		}
		return nil
	})
	bc.rxErr = err
	close(bc.rxDone)
}

// Send writes f to the served bus. ctx's deadline bounds the write.
func (bc *Conn) Send(ctx context.Context, f Frame) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("send on virtual can bus: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-bc.rxDone: // the peer has gone: do not write into a dead stream
		return fmt.Errorf("send on virtual can bus: %w", bc.rxErr)
	default:
	}
	bc.wmu.Lock()
	defer bc.wmu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		_ = bc.c.SetWriteDeadline(dl)
		defer bc.c.SetWriteDeadline(noDeadline)
	}
	bc.wbuf = AppendWire(bc.wbuf[:0], &f)
	if _, err := bc.c.Write(bc.wbuf); err != nil {
		return fmt.Errorf("send on virtual can bus: %w", err)
	}
	return nil
}

// Receive returns the next frame from the served bus. After the peer has
// gone it returns the reason (io.EOF when it closed cleanly); after Close an
// error wrapping net.ErrClosed.
func (bc *Conn) Receive(ctx context.Context) (Frame, error) {
	select {
	case f := <-bc.rx:
		return f, nil
	default:
	}
	select {
	case f := <-bc.rx:
		return f, nil
	case <-bc.done:
		return Frame{}, fmt.Errorf("receive on virtual can bus: %w", net.ErrClosed)
	case <-bc.rxDone:
		select {
		case f := <-bc.rx:
			return f, nil
		case <-bc.done:
			return Frame{}, fmt.Errorf("receive on virtual can bus: %w", net.ErrClosed)
		default:
		}
		return Frame{}, fmt.Errorf("receive on virtual can bus: %w", bc.rxErr)
	case <-ctx.Done():
		return Frame{}, ctx.Err()
	}
}

// Close closes the connection and waits for its reader to end. It is
// idempotent.
func (bc *Conn) Close() error {
	var err error
	bc.once.Do(func() {
		close(bc.done)
		err = bc.c.Close()
		<-bc.rxDone
	})
	return err
}

// Dropped returns the number of frames discarded because Receive was not
// called fast enough.
func (bc *Conn) Dropped() uint64 { return bc.dropped.Load() }
