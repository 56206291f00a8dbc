package agenttest

import "syscall"

// sysProcAttr makes the kernel kill the agent if the test process dies
// first, so that no agent outlives its test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
