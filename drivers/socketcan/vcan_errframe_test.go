//go:build vcan && linux

package socketcan

import (
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestVcanErrorFramesFromKernel injects error frames, laid out as
// linux/can/error.h documents them, through a second CAN_RAW socket on the
// real kernel: the kernel delivers them to Conn's error filter and Conn's
// own decoding (no third-party decoder) drives State and the counters.
func TestVcanErrorFramesFromKernel(t *testing.T) {
	var mu sync.Mutex
	var changes []State
	c := mustOpen(t, "vcan1", Options{ErrorFrames: true, OnState: func(_ string, _, to State) {
		mu.Lock()
		changes = append(changes, to)
		mu.Unlock()
	}})
	inject := rawSender(t, "vcan1")
	const (
		canErrFlag = 0x20000000 // CAN_ERR_FLAG
		crtl       = 0x004      // CAN_ERR_CRTL
		busOff     = 0x040      // CAN_ERR_BUSOFF
		restarted  = 0x100      // CAN_ERR_RESTARTED
		cnt        = 0x200      // CAN_ERR_CNT
	)
	inject(canErrFlag|crtl|cnt, 0, 0x08, 0, 0, 0, 0, 97, 12) // CAN_ERR_CRTL_TX_WARNING, counters
	inject(canErrFlag|crtl|cnt, 0, 0x20, 0, 0, 0, 0, 140, 3) // CAN_ERR_CRTL_TX_PASSIVE
	inject(canErrFlag | busOff)
	inject(canErrFlag | restarted)
	inject(canErrFlag|crtl|cnt, 0, 0x10, 0, 0, 0, 0, 7, 131) // CAN_ERR_CRTL_RX_PASSIVE
	// A data frame after them: Receive consumes the error frames on the
	// way to it and returns it.
	sendOne(t, mustOpen(t, "vcan1", Options{}), frameOf(0x321, false, false, 1))
	f, err := recvTimeout(t, c, 5*time.Second)
	if err != nil || f.ID != 0x321 {
		t.Fatalf("Receive() = %+v, %v; want the data frame 0x321", f, err)
	}
	s := c.Stats()
	if s.ErrorFrames != 5 || s.BusOffs != 1 || s.State != StatePassive || s.TxErrors != 7 || s.RxErrors != 131 {
		t.Errorf("Stats() = %+v, want 5 error frames, 1 bus-off, passive, tx 7, rx 131", s)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []State{StateWarning, StatePassive, StateBusOff, StateActive, StatePassive}
	if len(changes) != len(want) {
		t.Fatalf("state changes %v, want %v", changes, want)
	}
	for i := range want {
		if changes[i] != want[i] {
			t.Errorf("state changes %v, want %v", changes, want)
			break
		}
	}
}

// rawSender returns a function that writes one classic can_frame with the
// given can_id and data on iface through its own CAN_RAW socket.
func rawSender(t *testing.T, iface string) func(id uint32, data ...byte) {
	t.Helper()
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_CAN, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.CAN_RAW)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrCAN{Ifindex: ifi.Index}); err != nil {
		t.Fatal(err)
	}
	return func(id uint32, data ...byte) {
		t.Helper()
		var b [classicMTU]byte
		binary.NativeEndian.PutUint32(b[0:4], id)
		b[4] = byte(len(data))
		if id&flagERR != 0 {
			b[4] = 8 // CAN_ERR_DLC
		}
		copy(b[8:], data)
		if _, err := unix.Write(fd, b[:]); err != nil {
			t.Fatalf("write can_id %#x: %v", id, err)
		}
	}
}
