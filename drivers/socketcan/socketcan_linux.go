//go:build linux

package socketcan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcu-agent/tcu-agent/drivers"
	"github.com/tcu-agent/tcu-agent/drivers/canbus"
	"github.com/tcu-agent/tcu-agent/internal/backoff"
)

// Conn is one CAN_RAW socket bound to one interface. Send may be called
// concurrently with Receive; concurrent Receive calls are serialised.
type Conn struct {
	iface string
	opts  Options
	log   *slog.Logger
	f     *os.File
	rc    syscall.RawConn

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	rmu   sync.Mutex // serialises Receive
	rbuf  [fdMTU]byte
	oob   [oobSize]byte
	ring  *rxRing // ReceiveBatch's recvmmsg buffers, allocated on first use
	rwait deadlineWatch

	wmu   sync.Mutex // serialises Send
	wbuf  [fdMTU]byte
	wwait deadlineWatch

	rx, tx, drops, errFrames, busOffs atomic.Uint64
	state                             atomic.Int32
	counters                          atomic.Uint32 // tx<<8 | rx
}

var _ canbus.Bus = (*Conn)(nil)

// arphrdCAN is ARPHRD_CAN as /sys/class/net/<iface>/type shows it.
const arphrdCAN = "280"

// aLongTimeAgo is a deadline in the past that unblocks pending I/O.
var aLongTimeAgo = time.Unix(1, 0)

// Open binds a CAN_RAW socket to iface. It returns an error wrapping
// drivers.ErrNotReady when the interface does not exist or is down, one
// wrapping errors.ErrUnsupported when the kernel has no AF_CAN, and a
// *drivers.FatalError when iface is not a CAN interface.
func Open(iface string, opts Options) (*Conn, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w: %w", iface, drivers.ErrNotReady, err)
	}
	if t, err := os.ReadFile("/sys/class/net/" + iface + "/type"); err == nil && strings.TrimSpace(string(t)) != arphrdCAN {
		return nil, &drivers.FatalError{Err: fmt.Errorf("open %s: not a CAN interface (ARPHRD type %s)", iface, strings.TrimSpace(string(t)))}
	}
	if ifi.Flags&net.FlagUp == 0 {
		return nil, fmt.Errorf("open %s: %w: interface is down", iface, drivers.ErrNotReady)
	}
	fd, err := unix.Socket(unix.AF_CAN, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.CAN_RAW)
	if err != nil {
		if errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EPROTONOSUPPORT) {
			return nil, fmt.Errorf("open %s: socket: %w: %w", iface, errors.ErrUnsupported, err)
		}
		return nil, fmt.Errorf("open %s: socket: %w", iface, err)
	}
	if err := setup(fd, ifi.Index, opts); err != nil {
		_ = unix.Close(fd)
		if errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENETDOWN) {
			err = fmt.Errorf("%w: %w", drivers.ErrNotReady, err)
		}
		return nil, fmt.Errorf("open %s: %w", iface, err)
	}
	// The fd is non-blocking, so os.NewFile registers it with the runtime
	// poller: reads park the goroutine and deadlines work.
	f := os.NewFile(uintptr(fd), "can:"+iface)
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("open %s: %w", iface, err)
	}
	c := &Conn{iface: iface, opts: opts, log: opts.logger(), f: f, rc: rc}
	c.rwait.set, c.wwait.set = f.SetReadDeadline, f.SetWriteDeadline
	return c, nil
}

// setup sets the socket options and binds fd to the interface.
func setup(fd, ifindex int, opts Options) error {
	if opts.RcvBuf >= 0 {
		size := opts.RcvBuf
		if size == 0 {
			size = DefaultRcvBuf
		}
		// SO_RCVBUFFORCE (root or CAP_NET_ADMIN) exceeds rmem_max.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size); err != nil {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, size); err != nil {
				return fmt.Errorf("set SO_RCVBUF: %w", err)
			}
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return fmt.Errorf("set SO_TIMESTAMPNS: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1); err != nil {
		return fmt.Errorf("set SO_RXQ_OVFL: %w", err)
	}
	if opts.FD {
		if err := unix.SetsockoptInt(fd, unix.SOL_CAN_RAW, unix.CAN_RAW_FD_FRAMES, 1); err != nil {
			return fmt.Errorf("set CAN_RAW_FD_FRAMES: %w", err)
		}
	}
	if opts.ErrorFrames {
		if err := unix.SetsockoptInt(fd, unix.SOL_CAN_RAW, unix.CAN_RAW_ERR_FILTER, unix.CAN_ERR_MASK); err != nil {
			return fmt.Errorf("set CAN_RAW_ERR_FILTER: %w", err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrCAN{Ifindex: ifindex}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	return nil
}

// Iface returns the interface name the Conn is bound to.
func (c *Conn) Iface() string { return c.iface }

// Receive returns the next data frame. Error frames update State and Stats
// and are not returned; remote frames are skipped. It returns ctx's error
// when ctx ends, an error wrapping net.ErrClosed after Close, and one
// wrapping drivers.ErrNotReady when the interface goes down or away.
func (c *Conn) Receive(ctx context.Context) (canbus.Frame, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	var f canbus.Frame
	if c.closed.Load() {
		return f, fmt.Errorf("receive %s: %w", c.iface, net.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return f, err
	}
	if err := c.rwait.arm(ctx); err != nil {
		return f, fmt.Errorf("receive %s: %w", c.iface, c.classify(err))
	}
	for {
		n, oobn, err := c.recvLocked()
		if err != nil {
			if retry, err := c.readErrorLocked(ctx, err); !retry {
				return f, err
			}
			continue
		}
		var ef errorFrame
		isErr, err := decodeFrame(c.rbuf[:n], &f, &ef)
		switch {
		case errors.Is(err, errSkip):
			continue
		case err != nil:
			return f, fmt.Errorf("receive %s: %w", c.iface, err)
		case isErr:
			c.errorFrame(&ef)
			continue
		}
		ts, drops, haveTS, haveDrops := parseCmsgs(c.oob[:oobn])
		if haveDrops {
			c.drops.Store(uint64(drops))
		}
		if haveTS {
			f.Time = ts
		} else {
			f.Time = time.Now()
		}
		c.rx.Add(1)
		return f, nil
	}
}

// recvLocked reads one frame and its control messages into rbuf and oob.
func (c *Conn) recvLocked() (n, oobn int, err error) {
	rerr := c.rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, err = unix.Recvmsg(int(fd), c.rbuf[:], c.oob[:], 0)
		return !errors.Is(err, unix.EAGAIN)
	})
	if rerr != nil {
		return 0, 0, rerr
	}
	return n, oobn, err
}

// readErrorLocked maps a read error; retry reports a spurious deadline
// left over from an earlier call's cancellation.
func (c *Conn) readErrorLocked(ctx context.Context, err error) (retry bool, _ error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if cerr := ctx.Err(); cerr != nil {
			return false, cerr
		}
		if c.rwait.expired() {
			return false, context.DeadlineExceeded
		}
		c.rwait.invalidate()
		if err := c.rwait.arm(ctx); err != nil {
			return false, fmt.Errorf("receive %s: %w", c.iface, c.classify(err))
		}
		return true, nil
	}
	return false, fmt.Errorf("receive %s: %w", c.iface, c.classify(err))
}

// classify maps socket errors onto the package's sentinels.
func (c *Conn) classify(err error) error {
	switch {
	case c.closed.Load():
		return net.ErrClosed
	case errors.Is(err, unix.ENETDOWN), errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
		return fmt.Errorf("%w: %w", drivers.ErrNotReady, err)
	}
	return err
}

// errorFrame applies a controller error frame to the state and counters.
func (c *Conn) errorFrame(ef *errorFrame) {
	c.errFrames.Add(1)
	prev := State(c.state.Load())
	s, tx, rx, ok := nextState(prev, ef)
	if ok {
		c.counters.Store(uint32(tx)<<8 | uint32(rx))
	}
	if s == prev {
		return
	}
	c.state.Store(int32(s))
	if s == StateBusOff {
		c.busOffs.Add(1)
	}
	level := slog.LevelWarn
	if s == StateActive {
		level = slog.LevelInfo
	}
	c.log.Log(context.Background(), level, "can controller state changed", "iface", c.iface, "from", prev.String(), "to", s.String())
	if c.opts.OnState != nil {
		c.opts.OnState(c.iface, prev, s)
	}
}

// Send transmits one frame. It honours ctx's deadline and cancellation,
// retrying while the interface's transmit queue is full (ENOBUFS).
func (c *Conn) Send(ctx context.Context, f canbus.Frame) error {
	if f.FD && !c.opts.FD {
		return fmt.Errorf("send %s: %w: fd frame on a socket opened without Options.FD", c.iface, canbus.ErrInvalidFrame)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b, err := encodeFrame(c.wbuf[:], &f)
	if err != nil {
		return fmt.Errorf("send %s: %w", c.iface, err)
	}
	if c.closed.Load() {
		return fmt.Errorf("send %s: %w", c.iface, net.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.wwait.arm(ctx); err != nil {
		return fmt.Errorf("send %s: %w", c.iface, c.classify(err))
	}
	return c.writeLocked(ctx, b)
}

// writeLocked writes b, backing off while the kernel reports ENOBUFS.
func (c *Conn) writeLocked(ctx context.Context, b []byte) error {
	wait := 100 * time.Microsecond
	for {
		var werr error
		err := c.rc.Write(func(fd uintptr) bool {
			_, werr = unix.Write(int(fd), b)
			return !errors.Is(werr, unix.EAGAIN)
		})
		if err == nil {
			err = werr
		}
		switch {
		case err == nil:
			c.tx.Add(1)
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			if c.wwait.expired() {
				return context.DeadlineExceeded
			}
			c.wwait.invalidate() // spurious: an earlier context's hook
			if err := c.wwait.arm(ctx); err != nil {
				return fmt.Errorf("send %s: %w", c.iface, c.classify(err))
			}
		case errors.Is(err, unix.ENOBUFS):
			if err := backoff.Sleep(ctx, wait); err != nil {
				return err
			}
			wait = min(2*wait, 10*time.Millisecond)
		default:
			return fmt.Errorf("send %s: %w", c.iface, c.classify(err))
		}
	}
}

// Close closes the socket; a blocked Receive or Send returns an error
// wrapping net.ErrClosed. Close is idempotent.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.rwait.release()
		c.wwait.release()
		if err := c.f.Close(); err != nil {
			c.closeErr = fmt.Errorf("close %s: %w", c.iface, err)
		}
	})
	return c.closeErr
}

// State returns the controller state from the last error frame.
func (c *Conn) State() State { return State(c.state.Load()) }

// Dropped returns the kernel's drop count (canbus.DropCounter).
func (c *Conn) Dropped() uint64 { return c.drops.Load() }

// Stats returns the Conn's counters.
func (c *Conn) Stats() Stats {
	cnt := c.counters.Load()
	return Stats{
		RxFrames: c.rx.Load(), TxFrames: c.tx.Load(), Drops: c.drops.Load(),
		ErrorFrames: c.errFrames.Load(), BusOffs: c.busOffs.Load(), State: c.State(),
		TxErrors: uint8(cnt >> 8), RxErrors: uint8(cnt),
	}
}
