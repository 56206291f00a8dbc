package agent

import "golang.org/x/sys/unix"

// kernelClockSynced reports whether the kernel considers the system clock
// synchronised (an NTP/chrony/timesyncd or PTP daemon cleared STA_UNSYNC).
func kernelClockSynced() bool {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return false
	}
	return state != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0
}
