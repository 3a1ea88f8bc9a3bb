package broker

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/sockio"
)

// connReader is a connection's buffered reader. It holds a buffer only while there is input: a
// small pooled one first, a large pooled one while reads keep filling it, and none once the
// connection is parked (park.go), so an idle connection costs no buffer.
type connReader struct {
	conn net.Conn
	// raw is the TCP connection under conn (plain TCP, or TLS over it): such a connection can be
	// parked and takes connect slots. nil otherwise (WebSocket).
	raw  *sockio.Conn
	bp   *[]byte // the pooled buffer buf is, or nil
	buf  []byte
	r, w int
	big  bool
	// While the connection may park, the read deadline at a packet boundary is the park deadline
	// (idle set; readLoop parks when it passes) and inside a packet the keep-alive one, kaAt
	// (monotonic nanoseconds, 0: none): fill moves to it when the park deadline passes mid-packet.
	idle bool
	kaAt int64
}

// monoBase is the origin of the monotonic nanosecond times kept per connection (8 bytes instead
// of a time.Time's 24).
var monoBase = time.Now()

func monoNow() int64 { return int64(time.Since(monoBase)) }

func monoTime(ns int64) time.Time { return monoBase.Add(time.Duration(ns)) }

// kaDeadline is the keep-alive read deadline (zero: none).
func (cr *connReader) kaDeadline() time.Time {
	if cr.kaAt == 0 {
		return time.Time{}
	}
	return monoTime(cr.kaAt)
}

// parkDeadlinePassed reports whether err is the park deadline passing (not the keep-alive one).
func (cr *connReader) parkDeadlinePassed(err error) bool {
	var ne net.Error
	return cr.idle && errors.As(err, &ne) && ne.Timeout()
}

// pastParkDeadline handles a read that failed inside a packet: if the park deadline passed, the
// keep-alive one takes over and the read is to be tried again (true).
func (cr *connReader) pastParkDeadline(err error) bool {
	if !cr.parkDeadlinePassed(err) {
		return false
	}
	cr.idle = false
	_ = cr.conn.SetReadDeadline(cr.kaDeadline())
	return true
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
			cr.raw = raw
		}
	}
	return cr
}

// canPark reports whether the connection can be parked (park.go).
func (cr *connReader) canPark() bool { return cr.raw != nil }

// Buffered is how many bytes can be read without a system call.
func (cr *connReader) Buffered() int { return cr.w - cr.r }

// fill reads more input, waiting for it.
func (cr *connReader) fill() error {
	n, err := cr.read(cr.conn.Read)
	for n == 0 && cr.pastParkDeadline(err) {
		n, err = cr.read(cr.conn.Read)
	}
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// waitInput reads more input at a packet boundary, waiting for it until the read deadline: when
// that is the park deadline, its passing (parkDeadlinePassed) means the connection may park.
func (cr *connReader) waitInput() error {
	n, err := cr.read(cr.conn.Read)
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
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
				for n < len(p) && cr.pastParkDeadline(err) {
					var m int
					m, err = io.ReadFull(cr.conn, p[n:])
					n += m
				}
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
