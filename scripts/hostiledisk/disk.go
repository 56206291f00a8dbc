package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
)

// op is one write the disk received: data at off, or n zero bytes (TRIM
// and WRITE_ZEROES; a trimmed range reads back as zeroes).
type op struct {
	off  int64
	data []byte // nil: zeroes
	n    int64
}

func (o op) end() int64 { return o.off + o.n }

// writeTo writes the op to w, skipping the sectors of the 4 KiB page at
// byte offset skipPage whose bit in keep is clear (skipPage < 0: none).
func (o op) writeTo(w io.WriterAt, skipPage int64, keep uint8) error {
	if skipPage < 0 && o.data != nil {
		_, err := w.WriteAt(o.data, o.off)
		return err
	}
	if skipPage < 0 { // zeroes, a chunk at a time (a TRIM may span the disk)
		for at := o.off; at < o.end(); at += int64(len(zeroChunk)) {
			if _, err := w.WriteAt(zeroChunk[:min(int64(len(zeroChunk)), o.end()-at)], at); err != nil {
				return err
			}
		}
		return nil
	}
	for s := int64(0); s < o.n; s += sectorSize {
		at := o.off + s
		if at >= skipPage && at < skipPage+pageSize && keep&(1<<((at-skipPage)/sectorSize)) == 0 {
			continue
		}
		sec := zeroChunk[:sectorSize]
		if o.data != nil {
			sec = o.data[s : s+sectorSize]
		}
		if _, err := w.WriteAt(sec, at); err != nil {
			return err
		}
	}
	return nil
}

// zeroChunk is read-only zeroes.
var zeroChunk = make([]byte, 1<<20)

const pageSize = 4096

// Stats counts what the disk received; cmd/… and the wear benchmark read
// them from the -stats file.
type Stats struct {
	BytesWritten int64 `json:"bytes_written"` // WRITE payload bytes
	Writes       int64 `json:"writes"`
	BytesZeroed  int64 `json:"bytes_zeroed"` // TRIM + WRITE_ZEROES
	Zeroes       int64 `json:"zeroes"`
	Flushes      int64 `json:"flushes"`
	FUA          int64 `json:"fua"` // writes with the FUA flag
	BytesRead    int64 `json:"bytes_read"`
	Reads        int64 `json:"reads"`
}

// Disk is a block device with a volatile write cache over an image file:
// writes since the last completed FLUSH (or FUA write) stay in memory
// (pending) and reads see them; Flush applies them in order to the image
// and fsyncs it. Cut persists what a mode says and ends the disk.
type Disk struct {
	mu      sync.Mutex
	img     *os.File
	size    int64
	pending []op
	stats   Stats
	log     *opLog // nil: no recording
	cut     bool
	plan    CutPlan // of the cut, once cut
	cutErr  error
	arm     *armed // Arm: cut at the next flush
}

// armed is a cut waiting for the next flush.
type armed struct {
	mode Mode
	seed uint64
	done chan struct{}
}

// NewDisk serves img (its size, rounded down to sectors, is the disk's).
func NewDisk(img *os.File, log *opLog) (*Disk, error) {
	fi, err := img.Stat()
	if err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	return &Disk{img: img, size: fi.Size() / sectorSize * sectorSize, log: log}, nil
}

// Size is the disk's size in bytes.
func (d *Disk) Size() int64 { return d.size }

// Read returns n bytes at off: the image overlaid with the pending writes.
func (d *Disk) Read(off int64, n int) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cut {
		return nil, errCut
	}
	b := make([]byte, n)
	if _, err := d.img.ReadAt(b, off); err != nil && err != io.EOF {
		return nil, fmt.Errorf("read: %w", err)
	}
	overlay(b, off, d.pending)
	d.stats.Reads++
	d.stats.BytesRead += int64(n)
	return b, nil
}

// overlay copies into b (the bytes at off) the latest pending data of each
// sector.
func overlay(b []byte, off int64, pending []op) {
	end := off + int64(len(b))
	done := make([]bool, len(b)/sectorSize)
	left := len(done)
	for i := len(pending) - 1; i >= 0 && left > 0; i-- {
		o := pending[i]
		lo, hi := max(o.off, off), min(o.end(), end)
		for at := lo; at < hi; at += sectorSize {
			k := (at - off) / sectorSize
			if done[k] {
				continue
			}
			done[k] = true
			left--
			dst := b[at-off : at-off+sectorSize]
			if o.data == nil {
				clear(dst)
			} else {
				copy(dst, o.data[at-o.off:])
			}
		}
	}
}

// Write caches data at off; with fua it is durable (with everything
// before it) when Write returns.
func (d *Disk) Write(off int64, data []byte, fua bool) error {
	return d.add(op{off: off, data: data, n: int64(len(data))}, fua)
}

// Zero caches n zero bytes at off (TRIM, WRITE_ZEROES).
func (d *Disk) Zero(off, n int64, fua bool) error {
	return d.add(op{off: off, n: n}, fua)
}

func (d *Disk) add(o op, fua bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cut {
		return errCut
	}
	if o.data == nil {
		d.stats.Zeroes++
		d.stats.BytesZeroed += o.n
	} else {
		d.stats.Writes++
		d.stats.BytesWritten += o.n
	}
	if err := d.log.op(o); err != nil {
		return err
	}
	d.pending = append(d.pending, o)
	if fua && d.arm != nil {
		d.cutLocked(d.arm.mode, d.arm.seed, "before a FUA write completed")
		close(d.arm.done)
		return errCut
	}
	if fua {
		// A FUA write is durable when it completes. Modelled as a flush
		// of everything before it too: stronger than NBD requires (only
		// the write itself), never weaker.
		d.stats.FUA++
		return d.flushLocked()
	}
	return nil
}

// Flush applies the pending writes in order to the image and fsyncs it.
func (d *Disk) Flush() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cut {
		return errCut
	}
	if d.arm != nil && len(d.pending) > 0 {
		d.cutLocked(d.arm.mode, d.arm.seed, "before a flush")
		close(d.arm.done)
		return errCut
	}
	d.stats.Flushes++
	return d.flushLocked()
}

// Arm makes the next FLUSH that has writes to make durable cut the power
// instead (unanswered): the moment with the most writes at stake. The
// channel is closed when that happened; Cut cuts at once.
func (d *Disk) Arm(mode Mode, seed uint64) <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.arm == nil {
		d.arm = &armed{mode: mode, seed: seed, done: make(chan struct{})}
	}
	return d.arm.done
}

func (d *Disk) flushLocked() error {
	for _, o := range d.pending {
		if err := o.writeTo(d.img, -1, 0); err != nil {
			return fmt.Errorf("flush: %w", err)
		}
	}
	if err := d.img.Sync(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	d.pending = d.pending[:0]
	return d.log.flush()
}

// Stats returns the counters so far.
func (d *Disk) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// Cut is the power cut: it plans which pending writes persist under mode
// with seed, writes them to the image, fsyncs it and ends the disk (every
// later request fails with errCut, unanswered). It waits for a request in
// progress. Once cut (by an armed flush too), it returns that cut's plan.
func (d *Disk) Cut(mode Mode, seed uint64) (CutPlan, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.cut {
		d.cutLocked(mode, seed, "at once")
	}
	return d.plan, d.cutErr
}

func (d *Disk) cutLocked(mode Mode, seed uint64, at string) {
	d.cut = true
	p := planCut(d.pending, mode, seed)
	p.At = at
	d.plan = p
	if err := p.apply(d.img, d.pending); err != nil {
		d.cutErr = fmt.Errorf("cut: %w", err)
		return
	}
	if err := d.img.Sync(); err != nil {
		d.cutErr = fmt.Errorf("cut: %w", err)
		return
	}
	d.cutErr = d.log.close()
}

// writeStats writes the counters as JSON to path.
func writeStats(path string, st Stats) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}
