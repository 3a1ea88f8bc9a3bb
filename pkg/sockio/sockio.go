// Package sockio reads and writes plain TCP connections with raw non-blocking system calls.
//
// syscall.Read and syscall.Write (under net.Conn) treat every call as one that may block. On a
// process whose goroutines were all idle, entering such a call wakes the Go runtime's monitor
// thread (sysmon) with a futex, and that thread then polls every 20 µs until the process is idle
// again. A read or write of a non-blocking socket never blocks, so it needs none of that. At a
// paced 1000 messages/s this bookkeeping was most of a broker's latency for a lone message and
// half its CPU (scenario S5 of the benchmarks), and in the load generator it made thousands of
// thread wake-ups per second that preempted the broker it measured.
//
// Waiting (for data, or for room to write) still happens in the runtime's poller, so deadlines and
// Close behave as on any net.Conn. Race-detector builds use syscall.Read and syscall.Write, whose
// annotations tell the detector that a write at one end of a socket happens before the read at the
// other; raw calls carry no such edge.
package sockio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Conn is a TCP connection whose Read, Write and TryWrite make raw system calls. It is safe for
// concurrent use like any net.Conn: reads are serialised with reads, writes with writes.
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn

	// rmu guards the read call's argument and results; readFn is c.readFd, made once so that a
	// read allocates nothing.
	rmu    sync.Mutex
	rp     []byte
	rn     int
	rerr   error
	readFn func(uintptr) bool
	rwait  bool // wait for input, or answer errWouldBlock (the read hook's first try)
	// readHook, when set, is told around Read's waits (SetReadHook); reader goroutine only.
	readHook func(waiting bool)

	// wmu guards the write call's argument and results, as rmu does for reads.
	wmu     sync.Mutex
	wp      []byte
	wn      int
	werr    error
	wait    bool // Write: wait for room; TryWrite: stop when the socket is full
	writeFn func(uintptr) bool
}

// Wrap returns c as a *Conn when it is a *net.TCPConn, and c unchanged otherwise (TLS, WebSocket).
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	s := &Conn{TCPConn: tc, rc: rc}
	s.readFn, s.writeFn = s.readFd, s.writeFd
	return s
}

// errWouldBlock is read's answer when it may not wait and the socket has nothing to read.
var errWouldBlock = errors.New("sockio: read would block")

// SetReadHook makes Read call f(true) before it waits for input and f(false) once it has read
// some (whether it waited or not); nil removes it. Call it from the goroutine that reads. The
// broker uses it to hold a connect slot only while a connecting client's input is being handled.
func (c *Conn) SetReadHook(f func(waiting bool)) { c.readHook = f }

// Control runs f with the socket's file descriptor, which stays open while f runs (see
// syscall.RawConn). It fails once the connection is closed.
func (c *Conn) Control(f func(fd uintptr)) error { return c.rc.Control(f) }

// Read reads into p, waiting in the poller while the socket is empty.
func (c *Conn) Read(p []byte) (int, error) {
	if hook := c.readHook; hook != nil {
		n, err := c.read(p, false)
		if err == errWouldBlock {
			hook(true)
			n, err = c.read(p, true)
		}
		if n > 0 {
			hook(false)
		}
		return n, err
	}
	return c.read(p, true)
}

func (c *Conn) read(p []byte, wait bool) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rp, c.rn, c.rerr, c.rwait = p, 0, nil, wait
	err := c.rc.Read(c.readFn)
	n, rerr := c.rn, c.rerr
	c.rp, c.rerr = nil, nil
	if err == nil {
		err = rerr
	}
	return n, err
}

func (c *Conn) readFd(fd uintptr) bool {
	for {
		n, e := sysRead(fd, c.rp)
		switch e {
		case 0:
			c.rn = n
			if n == 0 {
				c.rerr = io.EOF
			}
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			if !c.rwait {
				c.rerr = errWouldBlock
				return true
			}
			return false // the poller waits until readable
		default:
			c.rerr = os.NewSyscallError("read", e)
			return true
		}
	}
}

// Write writes all of p, waiting in the poller while the socket is full.
func (c *Conn) Write(p []byte) (int, error) { return c.write(p, true) }

// TryWrite writes as much of p as the socket takes now and never waits. It returns fewer bytes than
// len(p), with a nil error, when the socket is full.
func (c *Conn) TryWrite(p []byte) (int, error) { return c.write(p, false) }

func (c *Conn) write(p []byte, wait bool) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wp, c.wn, c.werr, c.wait = p, 0, nil, wait
	err := c.rc.Write(c.writeFn)
	n, werr := c.wn, c.werr
	c.wp, c.werr = nil, nil
	if err == nil {
		err = werr
	}
	return n, err
}

func (c *Conn) writeFd(fd uintptr) bool {
	for c.wn < len(c.wp) {
		n, e := sysWrite(fd, c.wp[c.wn:])
		switch e {
		case 0:
			if n == 0 {
				c.werr = io.ErrShortWrite
				return true
			}
			c.wn += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			return !c.wait // false: the poller waits until writable
		default:
			c.werr = os.NewSyscallError("write", e)
			return true
		}
	}
	return true
}

func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	if raceBuild {
		return errnoOf(syscall.Read(int(fd), p))
	}
	return rawRead(fd, p)
}

func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	if raceBuild {
		return errnoOf(syscall.Write(int(fd), p))
	}
	return rawWrite(fd, p)
}

// rawRead is read(2) as a raw system call; len(p) > 0.
func rawRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

// rawWrite is write(2) as a raw system call; len(p) > 0.
func rawWrite(fd uintptr, p []byte) (int, syscall.Errno) {
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
