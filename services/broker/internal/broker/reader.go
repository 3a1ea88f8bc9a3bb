package broker

import (
	"io"
	"net"
	"sync"
)

// connReader is a connection's buffered reader with an adaptive buffer: an idle connection keeps
// only a small inline buffer, and a busy one borrows a large pooled buffer while its reads keep
// filling it. This keeps idle connections cheap (see S4 in the benchmarks) without giving up
// large reads under load.
type connReader struct {
	conn  net.Conn
	buf   []byte
	r, w  int
	big   bool
	small [smallReadBuffer]byte
}

const (
	smallReadBuffer = 512
	bigReadBuffer   = 32 << 10
)

var bigBuffers = sync.Pool{New: func() any { b := make([]byte, bigReadBuffer); return &b }}

func newConnReader(c net.Conn) *connReader {
	cr := &connReader{conn: c}
	cr.buf = cr.small[:]
	return cr
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
	n, err := cr.conn.Read(cr.buf[cr.w:])
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
