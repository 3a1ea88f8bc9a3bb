package broker

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"

	"github.com/mcloudtt/mcloudtt/pkg/sockio"
)

// connReader is a connection's buffered reader. It holds a buffer only while there is input: a
// small pooled one first, a large pooled one while reads keep filling it, and none once a read
// loop that parks (park.go) has consumed everything, so an idle connection costs no buffer.
type connReader struct {
	conn net.Conn
	// raw is the TCP connection under conn when the connection can be read without waiting
	// (plain TCP, or TLS over it): tryFill then reports an empty socket instead of parking a
	// goroutine. nil otherwise (WebSocket).
	raw  *sockio.Conn
	tls  *tls.Conn // conn, when it is TLS over raw
	bp   *[]byte   // the pooled buffer buf is, or nil
	buf  []byte
	r, w int
	big  bool
}

const (
	smallReadBuffer = 512
	bigReadBuffer   = 32 << 10
)

var (
	smallBuffers = sync.Pool{New: func() any { b := make([]byte, smallReadBuffer); return &b }}
	bigBuffers   = sync.Pool{New: func() any { b := make([]byte, bigReadBuffer); return &b }}
)

func newConnReader(c net.Conn) connReader {
	cr := connReader{conn: c}
	switch x := c.(type) {
	case *sockio.Conn:
		cr.raw = x
	case *tls.Conn:
		if raw, ok := x.NetConn().(*sockio.Conn); ok {
			cr.raw, cr.tls = raw, x
		}
	}
	return cr
}

// canTry reports whether tryFill can tell an empty socket without waiting.
func (cr *connReader) canTry() bool { return cr.raw != nil }

// Buffered is how many bytes can be read without a system call.
func (cr *connReader) Buffered() int { return cr.w - cr.r }

// fill reads more input, waiting for it.
func (cr *connReader) fill() error {
	n, err := cr.read(cr.conn.Read)
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// errEmpty is tryFill's answer when there is nothing to read now.
var errEmpty = errors.New("no input")

// tryFill reads what has arrived without waiting: errEmpty when nothing has (for TLS: not a whole
// record), and then an empty reader gives its buffer back. Only when canTry.
func (cr *connReader) tryFill() error {
	read := cr.raw.TryRead
	if cr.tls != nil {
		read = cr.tlsTryRead
	}
	n, err := cr.read(read)
	switch {
	case n > 0:
		return nil
	case errors.Is(err, sockio.ErrWouldBlock):
		if cr.r == cr.w {
			cr.release()
		}
		return errEmpty
	case err == nil:
		return io.ErrNoProgress
	}
	return err
}

func (cr *connReader) tlsTryRead(p []byte) (int, error) {
	cr.raw.SetNoWait(true)
	n, err := cr.tls.Read(p)
	cr.raw.SetNoWait(false)
	return n, err
}

// read compacts the buffer (taking one if it has none), reads into it with readFn, and moves to
// the large buffer when a read filled it, back to a small one when reads are small again.
func (cr *connReader) read(readFn func([]byte) (int, error)) (int, error) {
	switch {
	case cr.buf == nil:
		cr.bp = smallBuffers.Get().(*[]byte)
		cr.buf, cr.r, cr.w = *cr.bp, 0, 0
	case cr.r == cr.w:
		cr.r, cr.w = 0, 0
	case cr.r > 0:
		cr.w = copy(cr.buf, cr.buf[cr.r:cr.w])
		cr.r = 0
	}
	n, err := readFn(cr.buf[cr.w:])
	cr.w += n
	full := cr.w == len(cr.buf)
	switch {
	case !cr.big && full:
		// Busy: move to a large buffer for the next reads.
		cr.swap(&bigBuffers, true)
	case cr.big && !full && cr.w < smallReadBuffer:
		// Quiet again: give the large buffer back.
		cr.swap(&smallBuffers, false)
	}
	return n, err
}

// swap moves the unread input to a buffer from pool.
func (cr *connReader) swap(pool *sync.Pool, big bool) {
	old, oldBig := cr.bp, cr.big
	cr.bp = pool.Get().(*[]byte)
	cr.w = copy(*cr.bp, cr.buf[cr.r:cr.w])
	cr.r = 0
	cr.buf, cr.big = *cr.bp, big
	putBuffer(old, oldBig)
}

func putBuffer(bp *[]byte, big bool) {
	if big {
		bigBuffers.Put(bp)
	} else {
		smallBuffers.Put(bp)
	}
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
			if cr.buf != nil && len(p) >= len(cr.buf) {
				// Large body: read straight into it.
				n, err := io.ReadFull(cr.conn, p)
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

// release gives the buffer back to its pool; unread input is dropped, so call it when there is
// none, or when the reader is done.
func (cr *connReader) release() {
	if cr.bp != nil {
		putBuffer(cr.bp, cr.big)
	}
	cr.bp, cr.buf, cr.big, cr.r, cr.w = nil, nil, false, 0, 0
}
