package broker

import (
	"syscall"
	"unsafe"
)

// sysRead and sysWrite are read(2) and write(2) on a non-blocking socket as raw system calls: see
// connReader.readFdRaw for why. Race-detector builds use syscall.Read and syscall.Write instead,
// whose annotations tell the detector that what one goroutine did before writing to a socket
// happens before what another does after reading it at the other end (raw calls carry no such
// edge, and the detector would report races that the socket orders).

func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	if raceBuild {
		return errnoOf(syscall.Read(int(fd), p))
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(r), e
}

func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	if raceBuild {
		return errnoOf(syscall.Write(int(fd), p))
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(r), e
}

func errnoOf(n int, err error) (int, syscall.Errno) {
	if err == nil {
		return n, 0
	}
	if e, ok := err.(syscall.Errno); ok {
		return 0, e
	}
	return 0, syscall.EIO
}
