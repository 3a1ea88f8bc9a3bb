package redistest

import "syscall"

// procAttr makes the kernel kill redis-server if the test binary dies without running its
// cleanups (a test timeout, a crash).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
