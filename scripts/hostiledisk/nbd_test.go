package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// client is a minimal NBD client, strict about what the server sends.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func (c *client) read(n int) []byte {
	c.t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(c.r, b); err != nil {
		c.t.Fatalf("read %d: %v", n, err)
	}
	return b
}

func (c *client) write(parts ...[]byte) {
	c.t.Helper()
	if _, err := c.c.Write(bytes.Join(parts, nil)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *client) option(code uint32, data []byte) {
	c.write(be64(optMagic), be32(code), be32(uint32(len(data))), data)
}

// optReply reads one option reply and checks its magic and option code.
func (c *client) optReply(code uint32) (typ uint32, data []byte) {
	c.t.Helper()
	h := c.read(20)
	if binary.BigEndian.Uint64(h) != repMagic || binary.BigEndian.Uint32(h[8:]) != code {
		c.t.Fatalf("option reply header % x for option %d", h, code)
	}
	return binary.BigEndian.Uint32(h[12:]), c.read(int(binary.BigEndian.Uint32(h[16:])))
}

// start connects to d over a pipe and does the greeting; done gets
// serveConn's result.
func start(t *testing.T, d *Disk, cflags uint32) (*client, chan error) {
	a, b := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- serveConn(b, d); b.Close() }()
	t.Cleanup(func() { a.Close(); <-done })
	_ = a.SetDeadline(time.Now().Add(20 * time.Second))
	c := &client{t: t, c: a, r: bufio.NewReader(a)}
	g := c.read(18)
	if binary.BigEndian.Uint64(g) != nbdMagic || binary.BigEndian.Uint64(g[8:]) != optMagic ||
		binary.BigEndian.Uint16(g[16:]) != hsFlagFixedNewstyle|hsFlagNoZeroes {
		t.Fatalf("greeting % x", g)
	}
	c.write(be32(cflags))
	return c, done
}

// goOpt does NBD_OPT_GO for export "" asking for the block sizes.
func (c *client) goOpt(size int64) {
	c.t.Helper()
	c.option(optGo, bytes.Join([][]byte{be32(0), be16(1), be16(infoBlockSize)}, nil))
	var sawExport, sawBS bool
	for {
		typ, data := c.optReply(optGo)
		switch {
		case typ == repAck:
			if !sawExport || !sawBS {
				c.t.Fatalf("ACK before export info (%v) and block size (%v)", sawExport, sawBS)
			}
			return
		case typ == repInfo && binary.BigEndian.Uint16(data) == infoExport:
			if len(data) != 12 || int64(binary.BigEndian.Uint64(data[2:])) != size || binary.BigEndian.Uint16(data[10:]) != transmissionFlags {
				c.t.Fatalf("export info % x", data)
			}
			sawExport = true
		case typ == repInfo && binary.BigEndian.Uint16(data) == infoBlockSize:
			if len(data) != 14 || binary.BigEndian.Uint32(data[2:]) != 512 {
				c.t.Fatalf("block size info % x", data)
			}
			sawBS = true
		default:
			c.t.Fatalf("GO reply type %#x % x", typ, data)
		}
	}
}

// cmd sends a request and reads the simple reply (and n bytes of data
// when it succeeded and wantData); it returns the error and the data.
func (c *client) cmd(typ, flags uint16, handle, off uint64, length uint32, payload []byte, wantData bool) (uint32, []byte) {
	c.t.Helper()
	c.write(be32(reqMagic), be16(flags), be16(typ), be64(handle), be64(off), be32(length), payload)
	h := c.read(16)
	if binary.BigEndian.Uint32(h) != simpleReplyMagic || binary.BigEndian.Uint64(h[8:]) != handle {
		c.t.Fatalf("reply header % x for handle %d", h, handle)
	}
	errno := binary.BigEndian.Uint32(h[4:])
	if errno == 0 && wantData {
		return 0, c.read(int(length))
	}
	return errno, nil
}

func newTestDisk(t *testing.T, size int64, fill byte) (*Disk, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, bytes.Repeat([]byte{fill}, int(size)), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	d, err := NewDisk(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d, path
}

func TestNBDSession(t *testing.T) {
	d, path := newTestDisk(t, 1<<20, 0xaa)
	c, done := start(t, d, clFlagFixedNewstyle|clFlagNoZeroes)
	// Unsupported options are refused, not fatal.
	c.option(8, nil) // NBD_OPT_STRUCTURED_REPLY
	if typ, _ := c.optReply(8); typ != repErrUnsup {
		t.Fatalf("structured reply: %#x, want ERR_UNSUP", typ)
	}
	c.option(optList, nil)
	if typ, _ := c.optReply(optList); typ != repServer {
		t.Fatalf("list: %#x", typ)
	}
	if typ, _ := c.optReply(optList); typ != repAck {
		t.Fatalf("list end: %#x", typ)
	}
	c.option(optGo, []byte{0, 0, 0, 9}) // name overruns
	if typ, _ := c.optReply(optGo); typ != repErrInvalid {
		t.Fatalf("bad GO: %#x", typ)
	}
	c.goOpt(1 << 20)

	data := bytes.Repeat([]byte{1, 2, 3, 4}, 1024)
	if e, _ := c.cmd(cmdWrite, 0, 1, 8192, 4096, data, false); e != 0 {
		t.Fatalf("write: errno %d", e)
	}
	if e, got := c.cmd(cmdRead, 0, 2, 8192-512, 5120, nil, true); e != 0 || !bytes.Equal(got[512:4608], data) || got[0] != 0xaa || got[4608] != 0xaa {
		t.Fatalf("read back: errno %d", e)
	}
	if onDisk, _ := os.ReadFile(path); onDisk[8192] != 0xaa {
		t.Fatal("an unflushed write reached the image")
	}
	if e, _ := c.cmd(cmdWriteZeroes, 0, 3, 8192, 512, nil, false); e != 0 {
		t.Fatalf("write zeroes: %d", e)
	}
	if e, got := c.cmd(cmdRead, 0, 4, 8192, 1024, nil, true); e != 0 || got[0] != 0 || got[512] != 1 {
		t.Fatalf("read after zeroes: errno %d % x", e, got[:2])
	}
	if e, _ := c.cmd(cmdFlush, 0, 5, 0, 0, nil, false); e != 0 {
		t.Fatalf("flush: %d", e)
	}
	if onDisk, _ := os.ReadFile(path); onDisk[8192] != 0 || onDisk[8192+512] != 1 {
		t.Fatal("flushed writes not in the image")
	}
	// Bad requests: unaligned, out of range, unknown command.
	for i, r := range []struct {
		typ       uint16
		off       uint64
		n         uint32
		want      uint32
		withWrite bool
	}{
		{cmdRead, 100, 512, errInval, false},
		{cmdRead, 1 << 20, 512, errNoSpc, false},
		{cmdWrite, 1<<20 - 512, 1024, errNoSpc, true},
		{99, 0, 0, errInval, false},
	} {
		var p []byte
		if r.withWrite {
			p = make([]byte, r.n)
		}
		if e, _ := c.cmd(r.typ, 0, uint64(10+i), r.off, r.n, p, false); e != r.want {
			t.Errorf("bad request %d: errno %d, want %d", i, e, r.want)
		}
	}
	// FUA: durable when it completes.
	if e, _ := c.cmd(cmdWrite, cmdFlagFUA, 20, 0, 512, bytes.Repeat([]byte{7}, 512), false); e != 0 {
		t.Fatalf("fua write: %d", e)
	}
	if onDisk, _ := os.ReadFile(path); onDisk[0] != 7 {
		t.Fatal("FUA write not in the image")
	}
	c.write(be32(reqMagic), be16(0), be16(cmdDisc), be64(30), be64(0), be32(0))
	if err := <-done; err != nil {
		t.Fatalf("after DISC: %v", err)
	}
	done <- nil // for the cleanup
	st := d.Stats()
	if st.Writes != 2 || st.BytesWritten != 4096+512 || st.Flushes != 1 || st.FUA != 1 || st.Zeroes != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestNBDExportName(t *testing.T) {
	for _, cf := range []uint32{clFlagFixedNewstyle, clFlagFixedNewstyle | clFlagNoZeroes} {
		d, _ := newTestDisk(t, 4096, 0)
		c, _ := start(t, d, cf)
		c.option(optExportName, []byte("anything"))
		r := c.read(10)
		if binary.BigEndian.Uint64(r) != 4096 || binary.BigEndian.Uint16(r[8:]) != transmissionFlags {
			t.Fatalf("export name reply % x", r)
		}
		if cf&clFlagNoZeroes == 0 {
			if z := c.read(124); !bytes.Equal(z, make([]byte, 124)) {
				t.Fatal("zero padding")
			}
		}
		if e, got := c.cmd(cmdRead, 0, 1, 0, 512, nil, true); e != 0 || len(got) != 512 {
			t.Fatalf("read: %d", e)
		}
	}
}

func TestNBDRefusesOldClients(t *testing.T) {
	d, _ := newTestDisk(t, 4096, 0)
	_, done := start(t, d, 0)
	if err := <-done; err == nil {
		t.Fatal("a client without fixed newstyle was accepted")
	}
	done <- nil
}

func TestNBDCutEndsServing(t *testing.T) {
	d, path := newTestDisk(t, 8192, 0)
	c, done := start(t, d, clFlagFixedNewstyle|clFlagNoZeroes)
	c.goOpt(8192)
	if e, _ := c.cmd(cmdWrite, 0, 1, 0, 512, bytes.Repeat([]byte{9}, 512), false); e != 0 {
		t.Fatal(e)
	}
	if _, err := d.Cut(ModeNothing, 1); err != nil {
		t.Fatal(err)
	}
	c.write(be32(reqMagic), be16(0), be16(cmdFlush), be64(2), be64(0), be32(0))
	if err := <-done; !errors.Is(err, errCut) {
		t.Fatalf("after the cut: %v, want errCut and no reply", err)
	}
	done <- nil
	if onDisk, _ := os.ReadFile(path); onDisk[0] != 0 {
		t.Fatal("mode nothing persisted a pending write")
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add(bytes.Join([][]byte{be32(reqMagic), be16(1), be16(cmdWrite), be64(7), be64(512), be32(4096)}, nil))
	f.Add(make([]byte, 28))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRequest(b)
		if err != nil {
			return
		}
		if len(b) != requestLen || binary.BigEndian.Uint32(b) != reqMagic {
			t.Fatal("accepted a bad header")
		}
		if r.check(1<<30) == 0 && r.typ != cmdFlush && r.typ != cmdDisc {
			if r.offset%512 != 0 || r.offset+uint64(r.length) > 1<<30 {
				t.Fatalf("check passed %+v", r)
			}
		}
	})
}

// FuzzHandshake feeds arbitrary client bytes to the handshake: it must
// return (an error or the transmission phase), never panic or hang.
func FuzzHandshake(f *testing.F) {
	f.Add(bytes.Join([][]byte{be32(3), be64(optMagic), be32(optGo), be32(6), be32(0), be16(0)}, nil))
	f.Add(bytes.Join([][]byte{be32(1), be64(optMagic), be32(optExportName), be32(0)}, nil))
	f.Add(bytes.Join([][]byte{be32(1), be64(optMagic), be32(optList), be32(0), be64(optMagic), be32(optAbort), be32(0)}, nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		rw := bufio.NewReadWriter(bufio.NewReader(bytes.NewReader(in)), bufio.NewWriter(&out))
		_ = handshake(rw, 1<<20)
	})
}

func FuzzParseInfoRequest(f *testing.F) {
	f.Add(bytes.Join([][]byte{be32(3), []byte("abc"), be16(1), be16(3)}, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		name, infos, err := parseInfoRequest(b)
		if err == nil && 4+len(name)+2+2*len(infos) != len(b) {
			t.Fatalf("parsed %q %v from %d bytes", name, infos, len(b))
		}
	})
}

func TestAcceptLoopCutsOnlyAfterWrites(t *testing.T) {
	d, _ := newTestDisk(t, 8192, 0)
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ended := make(chan error, 1)
	go func() { ended <- acceptLoop(ln, d) }()
	dial := func() *client {
		c, err := net.Dial("unix", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		cl := &client{t: t, c: c, r: bufio.NewReader(c)}
		cl.read(18)
		cl.write(be32(clFlagFixedNewstyle | clFlagNoZeroes))
		cl.goOpt(8192)
		return cl
	}
	c := dial()
	c.cmd(cmdRead, 0, 1, 0, 512, nil, true)
	c.c.Close() // gone without DISC, nothing written: a hung boot
	c = dial()
	if e, _ := c.cmd(cmdWrite, 0, 2, 0, 512, make([]byte, 512), false); e != 0 {
		t.Fatal(e)
	}
	c.c.Close()
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("acceptLoop ended without an error")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a client that wrote went away and acceptLoop did not end")
	}
}
