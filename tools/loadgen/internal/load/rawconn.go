package load

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// rawConn is a TCP connection whose Read and Write make raw system calls on the
// non-blocking socket and wait in the runtime's poller (deadlines and Close work as
// usual) only when the socket is empty or full.
//
// Why: a syscall.Read or syscall.Write enters the runtime's "blocking system call"
// path, which wakes its monitor thread (sysmon) whenever the process was idle; the
// monitor then polls every 20 µs until everything is idle again. At a paced 1000
// messages/s that was about 5,000 extra thread wake-ups per second in this tool, each
// one a chance to preempt the broker under test on a small machine, and it showed in the
// latency tail of every broker measured (scenario S5). Non-blocking socket calls never
// block, so they need none of that.
//
// One goroutine reads and one writes at a time (client serialises its writers).
type rawConn struct {
	*net.TCPConn
	rc syscall.RawConn

	rp      []byte
	rn      int
	rerr    error
	readFn  func(uintptr) bool
	wp      []byte
	wn      int
	werr    error
	writeFn func(uintptr) bool
}

// newRawConn wraps c when it is a plain TCP connection; anything else is returned as is.
func newRawConn(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	r := &rawConn{TCPConn: tc, rc: rc}
	// Method values made once, so that a call allocates nothing.
	r.readFn, r.writeFn = r.readFd, r.writeFd
	return r
}

func (r *rawConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.rp, r.rn, r.rerr = p, 0, nil
	err := r.rc.Read(r.readFn)
	n, rerr := r.rn, r.rerr
	r.rp, r.rerr = nil, nil
	if err != nil {
		return n, err
	}
	return n, rerr
}

func (r *rawConn) readFd(fd uintptr) bool {
	p := r.rp
	for {
		n, e := sysRead(fd, p)
		switch e {
		case 0:
			r.rn = n
			if n == 0 {
				r.rerr = io.EOF
			}
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // the poller waits until readable
		default:
			r.rerr = os.NewSyscallError("read", e)
			return true
		}
	}
}

func (r *rawConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.wp, r.wn, r.werr = p, 0, nil
	err := r.rc.Write(r.writeFn)
	n, werr := r.wn, r.werr
	r.wp, r.werr = nil, nil
	if err == nil {
		err = werr
	}
	return n, err
}

func (r *rawConn) writeFd(fd uintptr) bool {
	p := r.wp
	for r.wn < len(p) {
		n, e := sysWrite(fd, p[r.wn:])
		switch e {
		case 0:
			r.wn += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // the poller waits until writable
		default:
			r.werr = os.NewSyscallError("write", e)
			return true
		}
	}
	return true
}

// sysRead and sysWrite are the raw calls. Race-detector builds use syscall.Read and
// syscall.Write, whose annotations tell the detector that a write to one end of a socket
// happens before the read at the other (raw calls carry no such edge).
func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	if raceBuild {
		return errnoOf(syscall.Read(int(fd), p))
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	if raceBuild {
		return errnoOf(syscall.Write(int(fd), p))
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
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
