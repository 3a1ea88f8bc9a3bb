package wire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// ErrRedis wraps an error reply ("-ERR ...") from redis-server.
var ErrRedis = errors.New("redis error reply")

// AppendCommand appends a RESP array of bulk strings: one Redis command.
func AppendCommand(dst []byte, args ...[]byte) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(len(args)), 10)
	dst = append(dst, '\r', '\n')
	for _, a := range args {
		dst = appendBulk(dst, a)
	}
	return dst
}

// AppendPublishCommand appends PUBLISH channel payload without building an argument
// slice, for the publisher's hot loop.
func AppendPublishCommand(dst []byte, channel string, payload []byte) []byte {
	dst = append(dst, "*3\r\n$7\r\nPUBLISH\r\n$"...)
	dst = strconv.AppendInt(dst, int64(len(channel)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, channel...)
	dst = append(dst, '\r', '\n')
	return appendBulk(dst, payload)
}

func appendBulk(dst, b []byte) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

// Reply is one RESP reply. Arrays are flat: each element of Elems is a bulk, simple
// string or integer. That covers every reply of PUBLISH and SUBSCRIBE.
type Reply struct {
	Kind  byte   // '+', ':', '$', '*' (errors are returned as ErrRedis)
	Str   []byte // '+' and '$': the string; nil for a null bulk
	Int   int64  // ':': the integer; '*': the element count
	Elems [][]byte
}

// RESPReader reads replies from a redis connection. The slices in a Reply are valid
// until the next call to Read.
type RESPReader struct {
	r       *bufio.Reader
	buf     []byte
	elems   [][]byte
	maxBulk int
}

// NewRESPReader reads from r and refuses bulk strings longer than maxBulk bytes.
func NewRESPReader(r *bufio.Reader, maxBulk int) *RESPReader {
	return &RESPReader{r: r, maxBulk: maxBulk}
}

// Buffered reports how many bytes can be read without blocking.
func (rr *RESPReader) Buffered() int { return rr.r.Buffered() }

// Read reads one reply.
func (rr *RESPReader) Read() (Reply, error) {
	rr.buf = rr.buf[:0]
	line, err := rr.line()
	if err != nil {
		return Reply{}, err
	}
	switch line[0] {
	case '-':
		return Reply{}, fmt.Errorf("%w: %s", ErrRedis, line[1:])
	case '+':
		rr.buf = append(rr.buf, line[1:]...)
		return Reply{Kind: '+', Str: rr.buf}, nil
	case ':':
		n, err := parseInt(line[1:])
		return Reply{Kind: ':', Int: n}, err
	case '$':
		b, err := rr.bulk(line)
		return Reply{Kind: '$', Str: b}, err
	case '*':
		n, err := parseInt(line[1:])
		if err != nil {
			return Reply{}, err
		}
		if n < 0 || n > 64 {
			return Reply{}, fmt.Errorf("resp: %w: array of %d", ErrMalformed, n)
		}
		// Element bytes go into rr.buf; record offsets first, since appending may move it.
		type span struct{ a, b int }
		var spans [8]span
		sp := spans[:0]
		for i := int64(0); i < n; i++ {
			l, err := rr.line()
			if err != nil {
				return Reply{}, noEOF(err)
			}
			a := len(rr.buf)
			switch l[0] {
			case '$':
				b, err := rr.bulk(l)
				if err != nil {
					return Reply{}, err
				}
				if b == nil {
					a = -1
				}
			case '+', ':':
				rr.buf = append(rr.buf, l[1:]...)
			case '-':
				return Reply{}, fmt.Errorf("%w: %s", ErrRedis, l[1:])
			default:
				return Reply{}, fmt.Errorf("resp: %w: nested %q in array", ErrMalformed, l[0])
			}
			sp = append(sp, span{a, len(rr.buf)})
		}
		rr.elems = rr.elems[:0]
		for _, s := range sp {
			if s.a < 0 {
				rr.elems = append(rr.elems, nil)
				continue
			}
			rr.elems = append(rr.elems, rr.buf[s.a:s.b])
		}
		return Reply{Kind: '*', Int: n, Elems: rr.elems}, nil
	default:
		return Reply{}, fmt.Errorf("resp: %w: type byte %q", ErrMalformed, line[0])
	}
}

// line reads one CRLF-terminated line without its CRLF. It aliases the reader's buffer.
func (rr *RESPReader) line() ([]byte, error) {
	l, err := rr.r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("resp: %w: line longer than buffer", ErrMalformed)
		}
		return nil, err
	}
	if len(l) < 3 || l[len(l)-2] != '\r' {
		return nil, fmt.Errorf("resp: %w: bad line %q", ErrMalformed, l)
	}
	return l[:len(l)-2], nil
}

// bulk reads the body of a bulk string whose header line is hdr and appends it to
// rr.buf, returning the appended part (nil for a null bulk).
func (rr *RESPReader) bulk(hdr []byte) ([]byte, error) {
	n, err := parseInt(hdr[1:])
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, nil
	}
	if n > int64(rr.maxBulk) {
		return nil, fmt.Errorf("resp: %w: bulk of %d bytes", ErrTooLarge, n)
	}
	a := len(rr.buf)
	need := a + int(n) + 2
	if cap(rr.buf) < need {
		nb := make([]byte, a, 2*need)
		copy(nb, rr.buf)
		rr.buf = nb
	}
	rr.buf = rr.buf[:need]
	if _, err := io.ReadFull(rr.r, rr.buf[a:need]); err != nil {
		return nil, noEOF(err)
	}
	if rr.buf[need-2] != '\r' || rr.buf[need-1] != '\n' {
		return nil, fmt.Errorf("resp: %w: bulk not CRLF-terminated", ErrMalformed)
	}
	rr.buf = rr.buf[:need-2]
	return rr.buf[a:], nil
}

func parseInt(b []byte) (int64, error) {
	if len(b) == 0 {
		return 0, fmt.Errorf("resp: %w: empty integer", ErrMalformed)
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
		if len(b) == 0 {
			return 0, fmt.Errorf("resp: %w: bad integer", ErrMalformed)
		}
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' || n > (1<<62)/10 {
			return 0, fmt.Errorf("resp: %w: bad integer %q", ErrMalformed, b)
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, nil
}
