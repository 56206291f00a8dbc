package socketcan

// Error frames (linux/can/error.h). A CAN_RAW socket with an error filter
// receives them as classic can_frames with CAN_ERR_FLAG set in can_id; the
// low bits of can_id say which error classes the frame reports and the 8
// data bytes carry the details the classes select.

// Error classes: bits of can_id & CAN_ERR_MASK.
const (
	errClassTxTimeout = 0x001 // CAN_ERR_TX_TIMEOUT: TX timeout (by netdevice driver)
	errClassLostArb   = 0x002 // CAN_ERR_LOSTARB: lost arbitration, data[0] = bit
	errClassCtrl      = 0x004 // CAN_ERR_CRTL: controller problems, data[1]
	errClassProt      = 0x008 // CAN_ERR_PROT: protocol violations, data[2] type, data[3] location
	errClassTrx       = 0x010 // CAN_ERR_TRX: transceiver status, data[4]
	errClassAck       = 0x020 // CAN_ERR_ACK: received no ACK on transmission
	errClassBusOff    = 0x040 // CAN_ERR_BUSOFF: bus off
	errClassBusError  = 0x080 // CAN_ERR_BUSERROR: bus error (may flood)
	errClassRestarted = 0x100 // CAN_ERR_RESTARTED: controller restarted
	errClassCnt       = 0x200 // CAN_ERR_CNT: TX error counter in data[6], RX in data[7]
)

// Controller status in data[1] when errClassCtrl is set (CAN_ERR_CRTL_*).
const (
	ctrlRxOverflow = 0x01 // CAN_ERR_CRTL_RX_OVERFLOW
	ctrlTxOverflow = 0x02 // CAN_ERR_CRTL_TX_OVERFLOW
	ctrlRxWarning  = 0x04 // CAN_ERR_CRTL_RX_WARNING: reached warning level for RX errors
	ctrlTxWarning  = 0x08 // CAN_ERR_CRTL_TX_WARNING: reached warning level for TX errors
	ctrlRxPassive  = 0x10 // CAN_ERR_CRTL_RX_PASSIVE: reached error passive status RX
	ctrlTxPassive  = 0x20 // CAN_ERR_CRTL_TX_PASSIVE: reached error passive status TX
	ctrlActive     = 0x40 // CAN_ERR_CRTL_ACTIVE: recovered to error active state
)

// errorFrame is one decoded error frame: its classes (can_id &
// CAN_ERR_MASK) and its data bytes.
type errorFrame struct {
	class uint32
	data  [8]byte
}

// has reports whether the frame reports error class c.
func (e *errorFrame) has(c uint32) bool { return e.class&c != 0 }

// counters returns the TX and RX error counters when the frame carries
// them (CAN_ERR_CNT).
func (e *errorFrame) counters() (tx, rx uint8, ok bool) {
	if !e.has(errClassCnt) {
		return 0, 0, false
	}
	return e.data[6], e.data[7], true
}
