package broker

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// connReader is a connection's buffered reader with an adaptive buffer: an idle connection keeps
// only a small inline buffer, and a busy one borrows a large pooled buffer while its reads keep
// filling it. This keeps idle connections cheap (see S4 in the benchmarks) without giving up
// large reads under load.
type connReader struct {
	conn net.Conn
	raw  syscall.RawConn // plain sockets: reads bypass the runtime's syscall bookkeeping (readFd)
	// readFd's argument and results, and readFd as a method value.
	rp     []byte
	rn     int
	rerr   error
	readFd func(uintptr) bool
	buf    []byte
	r, w   int
	big    bool
	small  [smallReadBuffer]byte
}

const (
	smallReadBuffer = 512
	bigReadBuffer   = 32 << 10
)

var bigBuffers = sync.Pool{New: func() any { b := make([]byte, bigReadBuffer); return &b }}

func newConnReader(c net.Conn) *connReader {
	cr := &connReader{conn: c}
	cr.buf = cr.small[:]
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			cr.raw = raw
			cr.readFd = cr.readFdRaw
		}
	}
	return cr
}

// read reads into p (len(p) > 0) from the connection.
func (cr *connReader) read(p []byte) (int, error) {
	if cr.raw == nil {
		return cr.conn.Read(p)
	}
	cr.rp, cr.rn, cr.rerr = p, 0, nil
	err := cr.raw.Read(cr.readFd)
	n, rerr := cr.rn, cr.rerr
	cr.rp, cr.rerr = nil, nil
	if err != nil {
		return n, err
	}
	return n, rerr
}

// readFdRaw reads into cr.rp from a non-blocking socket with a raw system call; returning false makes
// the runtime's poller wait (honouring read deadlines and Close) until the socket is readable. A
// read of a non-blocking socket never blocks, so it needs none of what syscall.Read does around it
// for a call that may: entering a system call wakes the runtime's monitor thread whenever the
// process was idle, and that futex wake and the thread switch it causes were a large part of the
// latency of a lone message on a quiet broker (scenario S5 in the benchmarks). It is a method value
// made once per connection, so that a read allocates nothing.
func (cr *connReader) readFdRaw(fd uintptr) bool {
	p := cr.rp
	for {
		r, e := sysRead(fd, p)
		switch e {
		case 0:
			cr.rn = r
			if r == 0 {
				cr.rerr = io.EOF
			}
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // wait until readable
		default:
			cr.rerr = os.NewSyscallError("read", e)
			return true
		}
	}
}

// Buffered is how many bytes can be read without a system call.
func (cr *connReader) Buffered() int { return cr.w - cr.r }

func (cr *connReader) fill() error {
	if cr.r == cr.w {
		cr.r, cr.w = 0, 0
	} else if cr.r > 0 {
		cr.w = copy(cr.buf, cr.buf[cr.r:cr.w])
		cr.r = 0
	}
	n, err := cr.read(cr.buf[cr.w:])
	cr.w += n
	full := cr.w == len(cr.buf)
	switch {
	case !cr.big && full:
		// Busy: move to a large buffer for the next reads.
		bp := bigBuffers.Get().(*[]byte)
		nb := *bp
		cr.w = copy(nb, cr.buf[cr.r:cr.w])
		cr.r = 0
		cr.buf = nb
		cr.big = true
	case cr.big && !full && cr.w < smallReadBuffer:
		// Quiet again: give the large buffer back.
		b := cr.buf
		cr.w = copy(cr.small[:], b[:cr.w])
		cr.buf = cr.small[:]
		cr.big = false
		bigBuffers.Put(&b)
	}
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// ReadByte implements io.ByteReader.
func (cr *connReader) ReadByte() (byte, error) {
	for cr.r == cr.w {
		if err := cr.fill(); err != nil {
			return 0, err
		}
	}
	b := cr.buf[cr.r]
	cr.r++
	return b, nil
}

// ReadFull fills p completely.
func (cr *connReader) ReadFull(p []byte) error {
	for len(p) > 0 {
		if cr.r == cr.w {
			if len(p) >= len(cr.buf) {
				// Large body: read straight into it.
				n, err := io.ReadFull(readerFunc(cr.read), p)
				if n == len(p) {
					return nil
				}
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
			if err := cr.fill(); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		n := copy(p, cr.buf[cr.r:cr.w])
		cr.r += n
		p = p[n:]
	}
	return nil
}

// release returns a borrowed buffer to the pool; the reader must not be used afterwards.
func (cr *connReader) release() {
	if cr.big {
		b := cr.buf
		cr.buf = cr.small[:]
		cr.big = false
		cr.r, cr.w = 0, 0
		bigBuffers.Put(&b)
	}
}

// readerFunc adapts a read function to io.Reader.
type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return f(p)
}
