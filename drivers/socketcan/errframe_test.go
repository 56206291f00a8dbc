package socketcan

import (
	"testing"

	"github.com/tcu-agent/tcu-agent/drivers/canbus"
)

// TestErrorFrameLayout decodes error frames laid out as linux/can/error.h
// documents them, with the header's literal values (not this package's
// constants), so a wrong constant fails here.
func TestErrorFrameLayout(t *testing.T) {
	t.Parallel()
	const canErrFlag = 0x20000000 // CAN_ERR_FLAG
	tests := []struct {
		name                string
		canID               uint32
		data                []byte
		prev, want          State
		wantTx, wantRx      uint8
		wantCountersPresent bool
	}{
		// CAN_ERR_BUSOFF 0x00000040U: bus off.
		{"busoff", canErrFlag | 0x40, nil, StatePassive, StateBusOff, 0, 0, false},
		// CAN_ERR_RESTARTED 0x00000100U: controller restarted.
		{"restarted", canErrFlag | 0x100, nil, StateBusOff, StateActive, 0, 0, false},
		// CAN_ERR_CRTL 0x00000004U, data[1] CAN_ERR_CRTL_RX_WARNING 0x04.
		{"crtl rx warning", canErrFlag | 0x04, []byte{0, 0x04}, StateActive, StateWarning, 0, 0, false},
		// data[1] CAN_ERR_CRTL_TX_WARNING 0x08.
		{"crtl tx warning", canErrFlag | 0x04, []byte{0, 0x08}, StateActive, StateWarning, 0, 0, false},
		// data[1] CAN_ERR_CRTL_RX_PASSIVE 0x10.
		{"crtl rx passive", canErrFlag | 0x04, []byte{0, 0x10}, StateWarning, StatePassive, 0, 0, false},
		// data[1] CAN_ERR_CRTL_TX_PASSIVE 0x20, with warning bits too:
		// passive is the worse state and wins.
		{"crtl tx passive and warning", canErrFlag | 0x04, []byte{0, 0x20 | 0x08}, StateActive, StatePassive, 0, 0, false},
		// data[1] CAN_ERR_CRTL_ACTIVE 0x40: recovered to error active.
		{"crtl active", canErrFlag | 0x04, []byte{0, 0x40}, StatePassive, StateActive, 0, 0, false},
		// data[1] CAN_ERR_CRTL_RX_OVERFLOW 0x01 / TX_OVERFLOW 0x02: no state.
		{"crtl overflow", canErrFlag | 0x04, []byte{0, 0x01 | 0x02}, StateWarning, StateWarning, 0, 0, false},
		// CAN_ERR_CNT 0x00000200U: data[6] TX error counter, data[7] RX.
		{"counters", canErrFlag | 0x04 | 0x200, []byte{0, 0x08, 0, 0, 0, 0, 97, 12}, StateActive, StateWarning, 97, 12, true},
		{"counters only", canErrFlag | 0x200, []byte{0, 0, 0, 0, 0, 0, 255, 128}, StatePassive, StatePassive, 255, 128, true},
		// CAN_ERR_TX_TIMEOUT 0x01, CAN_ERR_LOSTARB 0x02 (data[0] bit),
		// CAN_ERR_PROT 0x08 (data[2] type CAN_ERR_PROT_FORM 0x02, data[3]
		// location CAN_ERR_PROT_LOC_SOF 0x03), CAN_ERR_TRX 0x10 (data[4]),
		// CAN_ERR_ACK 0x20, CAN_ERR_BUSERROR 0x80: reported, no state change.
		{"tx timeout", canErrFlag | 0x01, nil, StateWarning, StateWarning, 0, 0, false},
		{"lost arbitration", canErrFlag | 0x02, []byte{5}, StateActive, StateActive, 0, 0, false},
		{"protocol violation", canErrFlag | 0x08, []byte{0, 0, 0x02, 0x03}, StateWarning, StateWarning, 0, 0, false},
		{"transceiver", canErrFlag | 0x10, []byte{0, 0, 0, 0, 0x04}, StateActive, StateActive, 0, 0, false},
		{"no ack", canErrFlag | 0x20, nil, StatePassive, StatePassive, 0, 0, false},
		{"bus error", canErrFlag | 0x80, nil, StateActive, StateActive, 0, 0, false},
		// Bus-off takes precedence over everything else in the frame.
		{"busoff with crtl active", canErrFlag | 0x40 | 0x04, []byte{0, 0x40}, StatePassive, StateBusOff, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			raw := rawFrame(tt.canID, pad8(tt.data)...) // CAN_ERR_DLC is 8
			var f canbus.Frame
			var ef errorFrame
			isErr, err := decodeFrame(raw, &f, &ef)
			if err != nil || !isErr {
				t.Fatalf("decodeFrame() = %v, %v; want an error frame", isErr, err)
			}
			if ef.class != tt.canID&^canErrFlag {
				t.Errorf("class = %#x, want %#x", ef.class, tt.canID&^canErrFlag)
			}
			if got := ef.data[:]; string(got) != string(pad8(tt.data)) {
				t.Errorf("data = % x, want % x", got, pad8(tt.data))
			}
			s, tx, rx, ok := nextState(tt.prev, &ef)
			if s != tt.want || tx != tt.wantTx || rx != tt.wantRx || ok != tt.wantCountersPresent {
				t.Errorf("nextState(%v) = %v %d %d %v, want %v %d %d %v", tt.prev, s, tx, rx, ok, tt.want, tt.wantTx, tt.wantRx, tt.wantCountersPresent)
			}
		})
	}
}

// TestErrorClassConstants pins the named constants to linux/can/error.h.
func TestErrorClassConstants(t *testing.T) {
	t.Parallel()
	got := []uint32{errClassTxTimeout, errClassLostArb, errClassCtrl, errClassProt, errClassTrx,
		errClassAck, errClassBusOff, errClassBusError, errClassRestarted, errClassCnt,
		ctrlRxOverflow, ctrlTxOverflow, ctrlRxWarning, ctrlTxWarning, ctrlRxPassive, ctrlTxPassive, ctrlActive}
	want := []uint32{0x001, 0x002, 0x004, 0x008, 0x010, 0x020, 0x040, 0x080, 0x100, 0x200,
		0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("constant %d = %#x, want %#x (linux/can/error.h)", i, got[i], want[i])
		}
	}
}

func pad8(b []byte) []byte {
	out := make([]byte, 8)
	copy(out, b)
	return out
}
