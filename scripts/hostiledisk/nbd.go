package main

// The NBD protocol, fixed newstyle handshake and simple replies: what
// qemu's NBD client needs (https://github.com/NetworkBlockDevice/nbd,
// doc/proto.md).

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const (
	nbdMagic         = 0x4e42444d41474943 // "NBDMAGIC"
	optMagic         = 0x49484156454f5054 // "IHAVEOPT"
	repMagic         = 0x0003e889045565a9
	reqMagic         = 0x25609513
	simpleReplyMagic = 0x67446698

	hsFlagFixedNewstyle = 1 << 0
	hsFlagNoZeroes      = 1 << 1
	clFlagFixedNewstyle = 1 << 0
	clFlagNoZeroes      = 1 << 1

	optExportName = 1
	optAbort      = 2
	optList       = 3
	optInfo       = 6
	optGo         = 7

	repAck        = 1
	repServer     = 2
	repInfo       = 3
	repErrUnsup   = 1<<31 + 1
	repErrInvalid = 1<<31 + 3
	repErrUnknown = 1<<31 + 6

	infoExport    = 0
	infoBlockSize = 3

	tfHasFlags       = 1 << 0
	tfSendFlush      = 1 << 2
	tfSendFUA        = 1 << 3
	tfSendTrim       = 1 << 5
	tfSendWriteZeros = 1 << 6

	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdWriteZeroes = 6

	cmdFlagFUA = 1 << 0

	errIO    = 5
	errInval = 22
	errNoSpc = 28

	sectorSize = 512
	// maxRequest bounds a READ/WRITE payload (advertised as the maximum
	// block size).
	maxRequest = 32 << 20
	// maxOption bounds an option's data during the handshake.
	maxOption = 64 << 10
	// requestLen is the size of a transmission request header.
	requestLen = 28
)

// transmissionFlags is what the server advertises for its export.
const transmissionFlags = tfHasFlags | tfSendFlush | tfSendFUA | tfSendTrim | tfSendWriteZeros

// errAbort ends a handshake the client aborted (NBD_OPT_ABORT).
var errAbort = errors.New("nbd: client aborted the handshake")

// request is one transmission-phase request header.
type request struct {
	flags, typ uint16
	handle     uint64
	offset     uint64
	length     uint32
}

// parseRequest decodes a 28-byte request header.
func parseRequest(b []byte) (request, error) {
	if len(b) != requestLen {
		return request{}, fmt.Errorf("nbd request: %d bytes, want %d", len(b), requestLen)
	}
	if m := binary.BigEndian.Uint32(b); m != reqMagic {
		return request{}, fmt.Errorf("nbd request: bad magic %#x", m)
	}
	return request{
		flags:  binary.BigEndian.Uint16(b[4:]),
		typ:    binary.BigEndian.Uint16(b[6:]),
		handle: binary.BigEndian.Uint64(b[8:]),
		offset: binary.BigEndian.Uint64(b[16:]),
		length: binary.BigEndian.Uint32(b[24:]),
	}, nil
}

// check validates a request against an export of size bytes: the range
// lies inside it, is sector-aligned (the server advertises a 512-byte
// minimum block) and a READ/WRITE is at most maxRequest. It returns an
// NBD error number, 0 when valid.
func (r request) check(size int64) uint32 {
	switch r.typ {
	case cmdFlush, cmdDisc:
		return 0
	case cmdRead, cmdWrite, cmdTrim, cmdWriteZeroes:
	default:
		return errInval
	}
	if (r.typ == cmdRead || r.typ == cmdWrite) && r.length > maxRequest {
		return errInval
	}
	if r.offset%sectorSize != 0 || r.length%sectorSize != 0 {
		return errInval
	}
	if r.offset > uint64(size) || uint64(r.length) > uint64(size)-r.offset {
		return errNoSpc
	}
	return 0
}

// option is one handshake option from the client.
type option struct {
	code uint32
	data []byte
}

// readOption reads one option: IHAVEOPT, code, length, data (at most
// maxOption bytes).
func readOption(r io.Reader) (option, error) {
	var h [16]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return option{}, fmt.Errorf("nbd option: %w", err)
	}
	if m := binary.BigEndian.Uint64(h[:]); m != optMagic {
		return option{}, fmt.Errorf("nbd option: bad magic %#x", m)
	}
	o := option{code: binary.BigEndian.Uint32(h[8:])}
	n := binary.BigEndian.Uint32(h[12:])
	if n > maxOption {
		return option{}, fmt.Errorf("nbd option %d: %d bytes of data (max %d)", o.code, n, maxOption)
	}
	o.data = make([]byte, n)
	if _, err := io.ReadFull(r, o.data); err != nil {
		return option{}, fmt.Errorf("nbd option %d: %w", o.code, err)
	}
	return o, nil
}

// parseInfoRequest decodes NBD_OPT_INFO/NBD_OPT_GO data: the export name
// and the information types the client asks for.
func parseInfoRequest(b []byte) (name string, infos []uint16, err error) {
	if len(b) < 6 {
		return "", nil, errors.New("nbd info request: short")
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n)+6 > uint64(len(b)) {
		return "", nil, errors.New("nbd info request: name overruns")
	}
	name = string(b[4 : 4+n])
	rest := b[4+n:]
	k := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*k {
		return "", nil, fmt.Errorf("nbd info request: %d bytes for %d types", len(rest), k)
	}
	for i := range k {
		infos = append(infos, binary.BigEndian.Uint16(rest[2*i:]))
	}
	return name, infos, nil
}

// optReply writes one option reply.
func optReply(w io.Writer, code, typ uint32, data []byte) error {
	b := make([]byte, 20, 20+len(data))
	binary.BigEndian.PutUint64(b, repMagic)
	binary.BigEndian.PutUint32(b[8:], code)
	binary.BigEndian.PutUint32(b[12:], typ)
	binary.BigEndian.PutUint32(b[16:], uint32(len(data)))
	_, err := w.Write(append(b, data...))
	return err
}

// handshake runs the fixed newstyle handshake for one export of size
// bytes (any export name is accepted) and returns when the transmission
// phase starts.
func handshake(rw *bufio.ReadWriter, size int64) error {
	var b [18]byte
	binary.BigEndian.PutUint64(b[:], nbdMagic)
	binary.BigEndian.PutUint64(b[8:], optMagic)
	binary.BigEndian.PutUint16(b[16:], hsFlagFixedNewstyle|hsFlagNoZeroes)
	if _, err := rw.Write(b[:]); err != nil {
		return err
	}
	if err := rw.Flush(); err != nil {
		return err
	}
	var cf [4]byte
	if _, err := io.ReadFull(rw, cf[:]); err != nil {
		return fmt.Errorf("nbd client flags: %w", err)
	}
	clientFlags := binary.BigEndian.Uint32(cf[:])
	if clientFlags&clFlagFixedNewstyle == 0 {
		return fmt.Errorf("nbd client flags %#x: not fixed newstyle", clientFlags)
	}
	if clientFlags&^(clFlagFixedNewstyle|clFlagNoZeroes) != 0 {
		return fmt.Errorf("nbd client flags %#x: unknown bits", clientFlags)
	}
	for {
		o, err := readOption(rw)
		if err != nil {
			return err
		}
		switch o.code {
		case optExportName:
			var r [10]byte
			binary.BigEndian.PutUint64(r[:], uint64(size))
			binary.BigEndian.PutUint16(r[8:], transmissionFlags)
			out := r[:]
			if clientFlags&clFlagNoZeroes == 0 {
				out = append(out, make([]byte, 124)...)
			}
			if _, err := rw.Write(out); err != nil {
				return err
			}
			return rw.Flush()
		case optAbort:
			_ = optReply(rw, o.code, repAck, nil)
			_ = rw.Flush()
			return errAbort
		case optList:
			if len(o.data) != 0 {
				err = optReply(rw, o.code, repErrInvalid, nil)
				break
			}
			if err = optReply(rw, o.code, repServer, []byte{0, 0, 0, 0}); err == nil {
				err = optReply(rw, o.code, repAck, nil)
			}
		case optInfo, optGo:
			if _, _, perr := parseInfoRequest(o.data); perr != nil {
				err = optReply(rw, o.code, repErrInvalid, []byte(perr.Error()))
				break
			}
			var ex [12]byte
			binary.BigEndian.PutUint16(ex[:], infoExport)
			binary.BigEndian.PutUint64(ex[2:], uint64(size))
			binary.BigEndian.PutUint16(ex[10:], transmissionFlags)
			var bs [14]byte
			binary.BigEndian.PutUint16(bs[:], infoBlockSize)
			binary.BigEndian.PutUint32(bs[2:], sectorSize)
			binary.BigEndian.PutUint32(bs[6:], 4096)
			binary.BigEndian.PutUint32(bs[10:], maxRequest)
			if err = optReply(rw, o.code, repInfo, ex[:]); err == nil {
				err = optReply(rw, o.code, repInfo, bs[:])
			}
			if err == nil {
				err = optReply(rw, o.code, repAck, nil)
			}
			if err == nil && o.code == optGo {
				return rw.Flush()
			}
		default: // STARTTLS, structured replies, meta contexts, extended headers
			err = optReply(rw, o.code, repErrUnsup, nil)
		}
		if err != nil {
			return err
		}
		if err := rw.Flush(); err != nil {
			return err
		}
	}
}

// simpleReply writes a simple reply header (the READ data follows).
func simpleReply(w io.Writer, handle uint64, errno uint32) error {
	var b [16]byte
	binary.BigEndian.PutUint32(b[:], simpleReplyMagic)
	binary.BigEndian.PutUint32(b[4:], errno)
	binary.BigEndian.PutUint64(b[8:], handle)
	_, err := w.Write(b[:])
	return err
}

// errCut ends the transmission phase: the power was cut.
var errCut = errors.New("power cut")

// serveConn runs the handshake and the transmission phase on one
// connection against d until the client disconnects or d is cut. It
// returns nil on NBD_CMD_DISC.
func serveConn(rwc io.ReadWriter, d *Disk) error {
	rw := bufio.NewReadWriter(bufio.NewReaderSize(rwc, 1<<16), bufio.NewWriterSize(rwc, 1<<16))
	if err := handshake(rw, d.Size()); err != nil {
		return err
	}
	hdr := make([]byte, requestLen)
	for {
		if _, err := io.ReadFull(rw, hdr); err != nil {
			return fmt.Errorf("nbd request: %w", err)
		}
		r, err := parseRequest(hdr)
		if err != nil {
			return err
		}
		errno := r.check(d.Size())
		var payload []byte
		if r.typ == cmdWrite {
			if r.length > maxRequest {
				return fmt.Errorf("nbd write of %d bytes: too large to skip", r.length)
			}
			payload = make([]byte, r.length)
			if _, err := io.ReadFull(rw, payload); err != nil {
				return fmt.Errorf("nbd write payload: %w", err)
			}
		}
		if r.typ == cmdDisc {
			return nil
		}
		var data []byte
		if errno == 0 {
			fua := r.flags&cmdFlagFUA != 0
			switch r.typ {
			case cmdRead:
				data, err = d.Read(int64(r.offset), int(r.length))
			case cmdWrite:
				err = d.Write(int64(r.offset), payload, fua)
			case cmdTrim, cmdWriteZeroes:
				err = d.Zero(int64(r.offset), int64(r.length), fua)
			case cmdFlush:
				err = d.Flush()
			}
			if errors.Is(err, errCut) {
				return err
			}
			if err != nil {
				errno, data = errIO, nil
			}
		}
		if err := simpleReply(rw, r.handle, errno); err != nil {
			return err
		}
		if errno == 0 && r.typ == cmdRead {
			if _, err := rw.Write(data); err != nil {
				return err
			}
		}
		if rw.Reader.Buffered() < requestLen { // no request queued: send now
			if err := rw.Flush(); err != nil {
				return err
			}
		}
	}
}
