//go:build linux

package socketcan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
)

// rxBatch is how many frames one recvmmsg(2) reads at most.
const rxBatch = 32

// mmsghdr is struct mmsghdr: a msghdr and the received length (Go pads it
// to the C layout on 32- and 64-bit platforms alike).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// rxRing holds recvmmsg's buffers; its pointers refer to itself, so it is
// allocated once per Conn and never copied.
type rxRing struct {
	bufs [rxBatch][fdMTU]byte
	oobs [rxBatch][oobSize]byte
	iov  [rxBatch]unix.Iovec
	hdrs [rxBatch]mmsghdr
}

func newRxRing() *rxRing {
	r := &rxRing{}
	for i := range r.hdrs {
		r.iov[i].Base = &r.bufs[i][0]
		r.iov[i].SetLen(fdMTU)
		r.hdrs[i].hdr.Iov = &r.iov[i]
		r.hdrs[i].hdr.SetIovlen(1)
		r.hdrs[i].hdr.Control = &r.oobs[i][0]
	}
	return r
}

var _ canbus.BatchReceiver = (*Conn)(nil)

// ReceiveBatch blocks like Receive until at least one data frame has
// arrived, then returns up to len(fs) frames read with one recvmmsg(2)
// system call per batch (error frames update State and Stats and are not
// returned, as with Receive).
func (c *Conn) ReceiveBatch(ctx context.Context, fs []canbus.Frame) (int, error) {
	if len(fs) == 0 {
		return 0, errors.New("receive batch: empty buffer")
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.closed.Load() {
		return 0, fmt.Errorf("receive %s: %w", c.iface, net.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if c.ring == nil {
		c.ring = newRxRing()
	}
	if err := c.rwait.arm(ctx); err != nil {
		return 0, fmt.Errorf("receive %s: %w", c.iface, c.classify(err))
	}
	for {
		m, err := c.recvmmsgLocked(min(len(fs), rxBatch))
		if err != nil {
			if retry, err := c.readErrorLocked(ctx, err); !retry {
				return 0, err
			}
			continue
		}
		n := 0
		for i := range m {
			h := &c.ring.hdrs[i]
			var ef errorFrame
			f := &fs[n]
			isErr, err := decodeFrame(c.ring.bufs[i][:h.n], f, &ef)
			switch {
			case errors.Is(err, errSkip):
				continue
			case err != nil:
				if n > 0 {
					return n, nil
				}
				return 0, fmt.Errorf("receive %s: %w", c.iface, err)
			case isErr:
				c.errorFrame(&ef)
				continue
			}
			ts, drops, haveTS, haveDrops := parseCmsgs(c.ring.oobs[i][:h.hdr.Controllen])
			if haveDrops {
				c.drops.Store(uint64(drops))
			}
			if haveTS {
				f.Time = ts
			} else {
				f.Time = time.Now()
			}
			n++
		}
		if n > 0 {
			c.rx.Add(uint64(n))
			return n, nil
		}
	}
}

// recvmmsgLocked reads up to max frames with their control messages into
// the ring and returns how many.
func (c *Conn) recvmmsgLocked(max int) (int, error) {
	var n int
	var errno unix.Errno
	rerr := c.rc.Read(func(fd uintptr) bool {
		for i := range max {
			c.ring.hdrs[i].hdr.SetControllen(oobSize)
			c.ring.hdrs[i].hdr.Flags = 0
			c.ring.hdrs[i].n = 0
		}
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&c.ring.hdrs[0])), uintptr(max), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN {
			return false
		}
		n, errno = int(r), e
		return true
	})
	if rerr != nil {
		return 0, rerr
	}
	if errno != 0 {
		return 0, errno
	}
	return n, nil
}
